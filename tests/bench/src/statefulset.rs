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

use crate::host::{clock_ticks_per_second, cpu_ticks, is_root, stop, token, vm_rss_kib};
use crate::http::Conn;
use crate::sim_cluster::warning_summary;
use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
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

/// Host names of this run's node, apart from the test suite's (`kbt*`, `/kubus-t*`) and the
/// node bench's (`kbb*`, `/kubus-b*`), whose leftover sweeps must not take them.
struct NodeNames {
    node_name: String,
    bridge: String,
    cgroup_root: String,
    cluster_cidr: String,
}

impl NodeNames {
    fn new(tok: &str) -> NodeNames {
        let seed = u32::from_str_radix(tok, 16).unwrap_or(0);
        let (a, b) = (100 + (seed >> 8) % 100, (seed % 64) * 4);
        NodeNames {
            node_name: format!("bench-sts-{tok}"),
            bridge: format!("kbs{tok}"),
            cgroup_root: format!("/kubus-s{tok}"),
            cluster_cidr: format!("10.{a}.{b}.0/22"),
        }
    }
}

/// `kubus up` with its node, stopped on drop; then `kubus node-reset` and the data dir's removal.
struct Guard {
    exe: PathBuf,
    dir: PathBuf,
    names: NodeNames,
    child: Option<std::process::Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
        // A kubus killed outright leaves its nats-server behind.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nats-server.pid")) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).stderr(Stdio::null()).status();
        }
        match Command::new(&self.exe)
            .args(["node-reset", "--data-dir"])
            .arg(self.dir.join("node"))
            .args(["--bridge", &self.names.bridge, "--cgroup-root", &self.names.cgroup_root])
            .env("KUBUS_LOG", "warn")
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("cleanup: node-reset failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => eprintln!("cleanup: node-reset: {e}"),
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (code, buf) = Conn::open(addr).await?.request(method, path, "application/json", body.as_bytes()).await?;
    Ok((code, serde_json::from_slice(&buf).unwrap_or(Value::Null)))
}

async fn expect(addr: &str, method: &str, path: &str, body: Option<&Value>, ok: &[u16]) -> anyhow::Result<Value> {
    let (code, v) = http(addr, method, path, body).await?;
    if !ok.contains(&code) {
        bail!("{method} {path}: {code} {v}");
    }
    Ok(v)
}

async fn items(addr: &str, path: &str) -> anyhow::Result<Vec<Value>> {
    Ok(expect(addr, "GET", path, None, &[200]).await?["items"].as_array().cloned().unwrap_or_default())
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

fn ready(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
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
    Ok(warning_summary(&items(addr, &format!("{NS}/events?fieldSelector=type%3DWarning")).await?))
}

pub(crate) async fn run(args: StatefulSetArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("kubus bench statefulset runs real containers on the real node: run it as root");
    }
    let tok = token()?;
    let exe = std::env::current_exe().context("locating the kubus binary")?;
    let dir = std::env::temp_dir().join(format!("kubus-bench-sts-{tok}"));
    std::fs::create_dir_all(&dir)?;
    let mut guard = Guard { exe: exe.clone(), dir: dir.clone(), names: NodeNames::new(&tok), child: None };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On Ctrl-C or SIGTERM the bench's future is dropped and the guard cleans up the host.
    tokio::select! {
        r = bench(&args, &mut guard) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
        _ = term.recv() => bail!("terminated; cleaned up"),
    }
}

async fn bench(args: &StatefulSetArgs, guard: &mut Guard) -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let n = &guard.names;
    let started = Instant::now();
    let child = Command::new(&guard.exe)
        .args(["up", "--nats-listen", "127.0.0.1:0", "--cluster", "bench", "--dns-port", "0", "--data-dir"])
        .arg(&guard.dir)
        .args(["--api-port", &port.to_string(), "--cluster-cidr", &n.cluster_cidr, "--service-cidr", SERVICE_CIDR])
        .args(["--node-name", &n.node_name, "--bridge", &n.bridge, "--cgroup-root", &n.cgroup_root])
        .arg("--pod-log-dir")
        .arg(guard.dir.join("pod-logs"))
        .env("KUBUS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(guard.dir.join("kubus.log"))?)
        .spawn()?;
    let pid = child.id();
    guard.child = Some(child);
    let node_path = format!("/api/v1/nodes/{}", n.node_name);
    let allocatable = loop {
        if let Ok((200, node)) = http(&addr, "GET", &node_path, None).await {
            let is_ready = node["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            if is_ready {
                break node["status"]["allocatable"].clone();
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the node did not get Ready; see {}", guard.dir.join("kubus.log").display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "kubus bench statefulset: {} replicas (Parallel){}, on the real node {} (allocatable {allocatable}); kubus up pid {pid}",
        args.replicas,
        if args.claims { ", a local-path claim each" } else { "" },
        n.node_name
    );
    println!("{:<44} {:>8.2} s", "control plane and node Ready", started.elapsed().as_secs_f64());

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME},
        "spec": {"clusterIP": "None", "selector": {"app": NAME}, "ports": [{"port": 80}]}});
    expect(&addr, "POST", &format!("{NS}/services"), Some(&svc), &[201]).await?;
    let hz = clock_ticks_per_second();
    let cpu0 = cpu_ticks(pid).unwrap_or(0);
    let t0 = Instant::now();
    expect(&addr, "POST", SETS, Some(&stateful_set(args.replicas, args.claims)), &[201]).await?;
    let timeout = Duration::from_secs(args.timeout);
    let (mut first_bound, mut all_bound, mut all_ready) = (None, None, None);
    let (mut most_ready, mut pods) = (0, Vec::new());
    while all_ready.is_none() || (args.claims && all_bound.is_none()) {
        pods = items(&addr, &format!("{NS}/pods?labelSelector=app%3D{NAME}")).await?;
        let ready_now = pods.iter().filter(|p| ready(p)).count();
        most_ready = most_ready.max(ready_now);
        if ready_now >= args.replicas && all_ready.is_none() {
            all_ready = Some(t0.elapsed());
        }
        if args.claims {
            let claims = items(&addr, &format!("{NS}/persistentvolumeclaims")).await?;
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
    expect(&addr, "DELETE", &format!("{SETS}/{NAME}"), Some(&opts), &[200, 202]).await?;
    expect(&addr, "DELETE", &format!("{NS}/services/{NAME}"), None, &[200, 202]).await?;
    loop {
        let pods = items(&addr, &format!("{NS}/pods?labelSelector=app%3D{NAME}")).await?.len();
        let claims = items(&addr, &format!("{NS}/persistentvolumeclaims")).await?.len();
        let volumes = items(&addr, "/api/v1/persistentvolumes").await?.len();
        let set = http(&addr, "GET", &format!("{SETS}/{NAME}"), None).await?.0 != 404;
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
    let volumes_dir = guard.dir.join("node").join("volumes");
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
    fn names_fit_and_stay_clear_of_the_tests_and_the_node_bench() {
        for tok in ["000000", "ffffff", "a1b2c3"] {
            let n = NodeNames::new(tok);
            // Linux interface names are at most 15 bytes.
            assert!(n.bridge.len() <= 15, "{}", n.bridge);
            assert!(!n.bridge.starts_with("kbt") && !n.bridge.starts_with("kbb"));
            assert!(!n.cgroup_root.starts_with("/kubus-t") && !n.cgroup_root.starts_with("/kubus-b"));
        }
    }

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
