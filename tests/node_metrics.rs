//! Resource usage end to end (issue #12): a standalone node agent (`kubus node`) runs a
//! busy-loop pod and an idle one as real containers, reports their usage over the bus, and
//! the real `kubectl top` reads it through metrics.k8s.io from the API server; the agent's own
//! `/metrics` carries cAdvisor's series for them, which go once the pod is deleted.

mod common;

use common::{eventually, free_port, Cluster, NodeAgent, NodeNames};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: busy, labels: {app: usage}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: spin, image: busybox, command: [sh, -c, 'while :; do :; done']}
---
apiVersion: v1
kind: Pod
metadata: {name: idle, labels: {app: usage}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: nap
    image: busybox
    # 512 KiB in its writable layer, 256 KiB in an emptyDir.
    command: [sh, -c, 'dd if=/dev/zero of=/fill bs=1024 count=512 && dd if=/dev/zero of=/scratch/fill bs=1024 count=256 && exec sleep 3600']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {}}]
"#;

/// A plain HTTP/1.0 GET: (status code, body).
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.split_whitespace().nth(1)?.parse().ok()?, body.to_string()))
}

/// The value of the first series of `name` whose labels include every `key="value"` of `labels`.
fn series(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        let set: Vec<&str> = set.split(',').collect();
        labels.iter().all(|want| set.contains(want)).then(|| value.trim().parse().ok())?
    })
}

/// Millicores of a `kubectl top` CPU column ("1234m", or "2" whole cores).
fn millicores(s: &str) -> u64 {
    match s.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => s.parse::<u64>().unwrap() * 1000,
    }
}

/// Mebibytes of a `kubectl top` memory column ("123Mi").
fn mebibytes(s: &str) -> u64 {
    s.strip_suffix("Mi").unwrap_or_else(|| panic!("memory column {s:?}")).parse().unwrap()
}

/// The rows (whitespace-split columns) of a `kubectl top ... --no-headers`.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

/// What the node's memory working set is by /proc/meminfo (what the agent reports), MiB.
fn proc_working_set_mib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib = |k: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(&format!("{k}:"))).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (kib("MemTotal") - kib("MemFree") - kib("Inactive(file)")) / 1024
}

#[test]
fn kubectl_top_and_the_nodes_cadvisor_series() {
    let c = Cluster::start("node-metrics");
    let names = NodeNames::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = NodeAgent::start_with(&c, names.clone(), &["--metrics-bind-address", &addr]);
    agent.wait_ready(&c, 90);
    let (code, body) = eventually(20, || http_get(&addr, "/healthz"));
    assert_eq!((code, body.as_str()), (200, "ok"));

    c.apply(PODS);
    c.wait_pod_ready("busy", 90);
    c.wait_pod_ready("idle", 90);

    // Both pods get metrics one report after their containers run; the busy loop keeps a core
    // (the machine is shared: retried until a report shows it over half a core).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (busy, idle, last) = loop {
        let r = c.kubectl(&["top", "pods", "-l", "app=usage", "--no-headers"]);
        let last = format!("{}{}", r.stdout, r.stderr);
        let rows = rows(&r.stdout);
        let cpu = |pod: &str| rows.iter().find(|r| r[0] == pod).map(|r| millicores(&r[1]));
        match (cpu("busy"), cpu("idle")) {
            (Some(b), Some(i)) if b > 500 => break (b, i, last),
            _ if std::time::Instant::now() > deadline => {
                let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
                panic!("no report of the busy pod over 500m within 120 s (load {load}); last:\n{last}")
            }
            _ => std::thread::sleep(Duration::from_secs(2)),
        }
    };
    println!("kubectl top pods: busy {busy}m, idle {idle}m (last output: {last})");
    assert!(busy <= 1100, "one busy loop uses at most a core (plus rounding): {busy}m");
    assert!(idle < 50, "the idle pod uses next to no CPU: {idle}m");

    let out = c.kubectl(&["top", "pods", "--containers", "--no-headers"]).expect_ok();
    let containers = rows(&out);
    assert!(containers.iter().any(|r| r[0] == "busy" && r[1] == "spin"), "{out}");
    assert!(containers.iter().any(|r| r[0] == "idle" && r[1] == "nap"), "{out}");
    let memory: u64 = containers.iter().find(|r| r[1] == "nap").map(|r| mebibytes(&r[3])).unwrap();
    assert!(memory < 64, "a sleeping busybox has a small working set: {memory}Mi");

    let all = c.kubectl(&["top", "pods", "-A", "--no-headers"]).expect_ok();
    assert!(rows(&all).iter().any(|r| r[0] == "default" && r[1] == "busy"), "{all}");
    let one = c.kubectl(&["top", "pod", "idle", "--no-headers"]).expect_ok();
    assert_eq!(rows(&one).len(), 1, "{one}");
    assert_eq!(rows(&one)[0][0], "idle");
    c.kubectl(&["top", "pod", "nope"]).expect_err("podmetrics.metrics.k8s.io \"default/nope\" not found");
    // `kubectl get` prints metrics-server's columns from the server's table.
    let out = c.kubectl(&["get", "podmetrics", "idle"]).expect_ok();
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CPU", "MEMORY", "WINDOW"], "{out}");
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("idle ") && l.trim_end().ends_with('s')), "{out}");
    let out = c.kubectl(&["get", "nodemetrics", "--no-headers"]).expect_ok();
    assert!(rows(&out).iter().any(|r| r[0] == names.node_name && r.len() == 4), "{out}");

    // The node: its CPU includes the busy loop; its memory is what /proc says (within reason,
    // other work on the machine moves it between the two readings).
    let out = c.kubectl(&["top", "nodes", "--no-headers"]).expect_ok();
    let node = rows(&out).into_iter().find(|r| r[0] == names.node_name).unwrap_or_else(|| panic!("{out}"));
    let (cpu, mem) = (millicores(&node[1]), mebibytes(&node[3]));
    let expected = proc_working_set_mib();
    println!("kubectl top nodes: {cpu}m, {mem}Mi (/proc working set {expected}Mi)");
    assert!((400..=2100).contains(&cpu), "node CPU {cpu}m on a 2-core machine running a busy loop");
    assert!(mem * 2 > expected && mem < expected * 2, "node memory {mem}Mi against /proc's {expected}Mi");
    assert!(node[2].ends_with('%') && node[4].ends_with('%'), "{node:?}");

    // The node's /metrics: the busy container's CPU counter moves; the series name its pod.
    let busy_labels = ["namespace=\"default\"", "pod=\"busy\"", "container=\"spin\""];
    let scrape = || http_get(&addr, "/metrics").filter(|(code, _)| *code == 200).map(|(_, body)| body);
    let first = eventually(20, || series(&scrape()?, "container_cpu_usage_seconds_total", &busy_labels));
    std::thread::sleep(Duration::from_secs(2));
    let metrics = scrape().expect("metrics served");
    let second = series(&metrics, "container_cpu_usage_seconds_total", &busy_labels).expect("busy pod series");
    assert!(second > first, "busy loop CPU seconds {first} then {second}");
    assert!(series(&metrics, "container_memory_working_set_bytes", &busy_labels).is_some_and(|v| v > 0.0));
    let pod_level = ["pod=\"busy\"", "container=\"\""];
    assert!(series(&metrics, "container_cpu_usage_seconds_total", &pod_level).is_some(), "pod cgroup series");
    assert!(series(&metrics, "container_network_receive_bytes_total", &pod_level).is_some(), "pod network series");
    assert!(series(&metrics, "container_cpu_usage_seconds_total", &["id=\"/\""]).is_some(), "node series");
    assert_eq!(series(&metrics, "kubelet_running_containers", &["container_state=\"running\""]), Some(2.0));
    assert!(metrics.lines().any(|l| l == "kubelet_running_pods 2"), "running pods:\n{metrics}");
    assert!(series(&metrics, "kubelet_pod_worker_duration_seconds_count", &["operation_type=\"create\""])
        .is_some_and(|n| n >= 2.0));

    // Both pods started after the agent did: each counts once in the startup SLI, whose time
    // (less the pulls and init containers) is at most the whole start's.
    let count = |m: &str, name: &str| {
        m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
    };
    let m = eventually(30, || {
        let m = scrape()?;
        (count(&m, "kubelet_pod_start_sli_duration_seconds_count") == Some(2.0)).then_some(m)
    });
    assert_eq!(count(&m, "kubelet_pod_start_total_duration_seconds_count"), Some(2.0));
    let (sli, total) = (
        count(&m, "kubelet_pod_start_sli_duration_seconds_sum").unwrap(),
        count(&m, "kubelet_pod_start_total_duration_seconds_sum").unwrap(),
    );
    assert!(sli > 0.0 && sli <= total, "SLI {sli} s of {total} s in all");
    assert!(count(&m, "kubelet_first_network_pod_start_sli_duration_seconds").is_some_and(|v| v > 0.0));

    // The writable layer's use, once the housekeeping has walked it (cAdvisor's names).
    let nap = ["pod=\"idle\"", "container=\"nap\""];
    let (layer, m) = eventually(30, || {
        let m = scrape()?;
        Some((series(&m, "container_fs_usage_bytes", &nap)?, m))
    });
    assert!((512.0 * 1024.0..64.0 * 1024.0 * 1024.0).contains(&layer), "the 512 KiB written: {layer} bytes");
    let line = m.lines().find(|l| l.starts_with("container_fs_usage_bytes{") && l.contains("pod=\"idle\"")).unwrap();
    assert!(!line.contains("device=\"\""), "the layer's device is named: {line}");

    // A deleted pod's series go with it.
    c.kubectl(&["delete", "pod", "busy", "--wait=true"]).expect_ok();
    eventually(30, || {
        let m = scrape()?;
        (series(&m, "container_cpu_usage_seconds_total", &["pod=\"busy\""]).is_none()
            && series(&m, "container_cpu_usage_seconds_total", &["pod=\"idle\""]).is_some())
        .then_some(())
    });
    let metrics = scrape().unwrap();
    assert_eq!(series(&metrics, "kubelet_running_containers", &["container_state=\"running\""]), Some(1.0));
    assert!(series(&metrics, "kubelet_pod_worker_duration_seconds_count", &["operation_type=\"kill\""])
        .is_some_and(|n| n >= 1.0));
    assert!(series(&metrics, "container_fs_usage_bytes", &["pod=\"busy\""]).is_none(), "gone with its pod");
    // And its metrics, from the API.
    eventually(30, || {
        let out = c.kubectl(&["top", "pods", "--no-headers"]).stdout;
        (!out.contains("busy") && out.contains("idle")).then_some(())
    });
}

/// `kubus up` runs its node agent in the process: the node's series are on the API port's
/// /metrics, next to the control plane's, and `kubectl top` works there too.
#[test]
fn all_in_one_serves_the_nodes_series_on_the_api_port() {
    let c = Cluster::start_with_node("node-metrics-up", &[]);
    let node = c.node.clone().unwrap().node_name;
    c.apply(&PODS.split("---").nth(1).unwrap().replace("idle", "nap-pod"));
    c.wait_pod_ready("nap-pod", 90);
    eventually(60, || {
        let (code, body) = c.try_http("GET", "/metrics", None, None).ok()?;
        (code == 200
            && series(&body, "container_cpu_usage_seconds_total", &["pod=\"nap-pod\"", "container=\"nap\""]).is_some()
            && series(&body, "kubelet_running_containers", &["container_state=\"running\""]) == Some(1.0))
        .then_some(())
    });
    eventually(60, || {
        let out = c.kubectl(&["top", "pods", "--no-headers"]).stdout;
        let nodes = c.kubectl(&["top", "nodes", "--no-headers"]).stdout;
        (out.contains("nap-pod") && nodes.contains(&node)).then_some(())
    });
}
