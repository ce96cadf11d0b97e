//! `kubus bench statefulset`: a Parallel StatefulSet on the real node of `kubus up` (root: real
//! busybox containers; with `--claims`, a claim of the default local-path class per pod,
//! provisioned as a directory on the node). Reported: the time until every claim is Bound and
//! every pod Ready, then the time until the StatefulSet, its pods, claims and volumes are gone.
//! If not every pod gets Ready in time, what stands in the way (pods by phase and waiting
//! reason, the Warning events by reason) and how many did.
//!
//! Everything it makes is removed, also after a failure: the objects through the API, then
//! `kubus up` is stopped and `kubus node-reset` removes what the node made on the host
//! (containers, shims, mounts, sandboxes, its bridge and cgroups), then the data dir.

use crate::host::{clock_ticks_per_second, cpu_ticks, is_root, vm_rss_kib};
use crate::http::{expect_json, json_request, list_items};
use crate::real_node::{condition_true, RealNode};
use crate::sim_cluster::warning_summary;
use anyhow::bail;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NS: &str = "/api/v1/namespaces/default";
const SETS: &str = "/apis/apps/v1/namespaces/default/statefulsets";
const NAME: &str = "bench-sts";
/// A Service range of the bench's own, apart from the node bench's and the tests'.
const SERVICE_CIDR: &str = "172.31.253.0/24";

#[derive(clap::Args, Debug)]
pub struct StatefulSetArgs {
    #[arg(long, default_value_t = 100)]
    replicas: usize,
    /// Each pod mounts a claim of the default StorageClass (local-path).
    #[arg(long)]
    claims: bool,
    /// Seconds the set may take to get Ready before the bench reports what it reached.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

fn stateful_set(replicas: usize, claims: bool) -> Value {
    let mut spec = json!({"serviceName": NAME, "replicas": replicas, "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": {"app": NAME}},
        "template": {"metadata": {"labels": {"app": NAME}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox",
                "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "exec sleep 3600"]}]}}});
    if claims {
        spec["template"]["spec"]["containers"][0]["command"] =
            json!(["sh", "-c", "hostname >> /data/who; exec sleep 3600"]);
        spec["template"]["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
        spec["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}}}]);
        // The claims go with the set, so that deleting it removes everything.
        spec["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Delete", "whenScaled": "Delete"});
    }
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": NAME}, "spec": spec})
}

/// Where the pods are: by phase, and by the waiting reason of containers not running.
fn pod_summary(pods: &[Value]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for p in pods {
        let phase = p["status"]["phase"].as_str().unwrap_or("(none)").to_string();
        let waiting = p["status"]["containerStatuses"]
            .as_array()
            .and_then(|cs| cs.iter().find_map(|c| c["state"]["waiting"]["reason"].as_str()))
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        let unscheduled = if p["spec"]["nodeName"].is_null() { " unscheduled" } else { "" };
        *by.entry(format!("{phase}{waiting}{unscheduled}")).or_insert(0) += 1;
    }
    by.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
}

/// Warning events by reason, with one message of each.
async fn warnings(addr: &str) -> anyhow::Result<String> {
    Ok(warning_summary(&list_items(addr, &format!("{NS}/events?fieldSelector=type%3DWarning")).await?))
}

pub(crate) async fn run(args: StatefulSetArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("kubus bench statefulset runs real containers on the real node: run it as root");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On Ctrl-C or SIGTERM the bench's future is dropped and the node is cleaned up.
    tokio::select! {
        r = bench(&args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
        _ = term.recv() => bail!("terminated; cleaned up"),
    }
}

async fn bench(args: &StatefulSetArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let node = RealNode::start("sts", 's', SERVICE_CIDR, &[]).await?;
    let (addr, pid) = (node.addr.clone(), node.pid);
    println!(
        "kubus bench statefulset: {} replicas (Parallel){}, on the real node {} (allocatable {}); kubus up pid {pid}",
        args.replicas,
        if args.claims { ", a local-path claim each" } else { "" },
        node.names.node_name,
        node.allocatable
    );
    println!("{:<44} {:>8.2} s", "control plane and node Ready", started.elapsed().as_secs_f64());

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME},
        "spec": {"clusterIP": "None", "selector": {"app": NAME}, "ports": [{"port": 80}]}});
    expect_json(&addr, "POST", &format!("{NS}/services"), Some(&svc), &[201]).await?;
    let hz = clock_ticks_per_second();
    let cpu0 = cpu_ticks(pid).unwrap_or(0);
    let t0 = Instant::now();
    expect_json(&addr, "POST", SETS, Some(&stateful_set(args.replicas, args.claims)), &[201]).await?;
    let timeout = Duration::from_secs(args.timeout);
    let (mut first_bound, mut all_bound, mut all_ready) = (None, None, None);
    let (mut most_ready, mut pods) = (0, Vec::new());
    while all_ready.is_none() || (args.claims && all_bound.is_none()) {
        pods = list_items(&addr, &format!("{NS}/pods?labelSelector=app%3D{NAME}")).await?;
        let ready_now = pods.iter().filter(|p| condition_true(p, "Ready")).count();
        most_ready = most_ready.max(ready_now);
        if ready_now >= args.replicas && all_ready.is_none() {
            all_ready = Some(t0.elapsed());
        }
        if args.claims {
            let claims = list_items(&addr, &format!("{NS}/persistentvolumeclaims")).await?;
            let bound = claims.iter().filter(|c| c["status"]["phase"] == "Bound").count();
            if bound > 0 && first_bound.is_none() {
                first_bound = Some(t0.elapsed());
            }
            if bound >= args.replicas && all_bound.is_none() {
                all_bound = Some(t0.elapsed());
            }
        }
        if t0.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cpu = cpu_ticks(pid).unwrap_or(0).saturating_sub(cpu0) as f64 / hz;
    let rss = vm_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let secs = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64()));
    if args.claims {
        println!("{:<44} {:>8} s", "    first claim Bound", secs(first_bound));
        println!("{:<44} {:>8} s", format!("    all {} claims Bound", args.replicas), secs(all_bound));
    }
    println!("{:<44} {:>8} s", format!("all {} pods Ready", args.replicas), secs(all_ready));
    println!(
        "{:<44} {:>8.1} s   ({:.0} ms per pod); rss {rss:.0} MiB (containers' shims not included)",
        "    kubus up CPU (control plane + node agent)",
        cpu,
        cpu * 1e3 / args.replicas.max(1) as f64
    );
    if all_ready.is_none() {
        println!(
            "{:<44} {most_ready} Ready at most; pods now: {}",
            format!("    NOT all Ready within {} s", args.timeout),
            pod_summary(&pods)
        );
        println!("{:<44} {}", "    Warning events", warnings(&addr).await?);
    }

    // Everything goes: the set (its pods, and with them the claims and their volumes).
    let t1 = Instant::now();
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"});
    expect_json(&addr, "DELETE", &format!("{SETS}/{NAME}"), Some(&opts), &[200, 202]).await?;
    expect_json(&addr, "DELETE", &format!("{NS}/services/{NAME}"), None, &[200, 202]).await?;
    loop {
        let pods = list_items(&addr, &format!("{NS}/pods?labelSelector=app%3D{NAME}")).await?.len();
        let claims = list_items(&addr, &format!("{NS}/persistentvolumeclaims")).await?.len();
        let volumes = list_items(&addr, "/api/v1/persistentvolumes").await?.len();
        let set = json_request(&addr, "GET", &format!("{SETS}/{NAME}"), None).await?.0 != 404;
        if pods + claims + volumes == 0 && !set {
            break;
        }
        if t1.elapsed() > Duration::from_secs(300) {
            bail!("not gone after 300 s: set {set}, {pods} pods, {claims} claims, {volumes} volumes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "{:<44} {:>8.2} s",
        if args.claims { "deleted: set, pods, claims, volumes gone" } else { "deleted: set and pods gone" },
        t1.elapsed().as_secs_f64()
    );
    let volumes_dir = node.dir.join("node").join("volumes");
    let left = std::fs::read_dir(&volumes_dir).map(|d| d.count()).unwrap_or(0);
    if left > 0 {
        println!("    {left} volume directories left in {}", volumes_dir.display());
    }
    if all_ready.is_none() {
        bail!("{} of {} pods Ready within {} s (see above)", most_ready, args.replicas, args.timeout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_come_with_a_mount_and_go_with_the_set() {
        let s = stateful_set(3, true);
        assert_eq!(s["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data");
        assert_eq!(s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"], "/data");
        assert_eq!(s["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"], "Delete");
        assert!(stateful_set(3, false)["spec"]["volumeClaimTemplates"].is_null());
    }

    #[test]
    fn warnings_are_summed_up_by_reason_with_one_message() {
        let events = [
            json!({"reason": "FailedScheduling", "count": 3, "message": "0/1 nodes are available"}),
            json!({"reason": "BackOff", "message": "Back-off restarting"}),
            json!({"reason": "FailedScheduling", "count": 2, "message": "another"}),
        ];
        assert_eq!(
            warning_summary(&events),
            "BackOff x1 (\"Back-off restarting\"); FailedScheduling x5 (\"0/1 nodes are available\")"
        );
        assert_eq!(warning_summary(&[]), "");
    }

    #[test]
    fn pods_are_summed_up_by_phase_and_reason() {
        let pods = [
            json!({"spec": {"nodeName": "n"}, "status": {"phase": "Running"}}),
            json!({"spec": {"nodeName": "n"}, "status": {"phase": "Pending",
                "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
            json!({"spec": {}, "status": {"phase": "Pending"}}),
        ];
        assert_eq!(pod_summary(&pods), "Pending ContainerCreating: 1, Pending unscheduled: 1, Running: 1");
    }
}
