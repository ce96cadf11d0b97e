//! Pods through a real control plane (`kubus up --no-node`) and a real node agent (`kubus node`):
//! create -> Running seen by a watch, one at a time and in a burst, deletion, and the RSS of the
//! agent and its shims.

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
use k8s_openapi::List;
use kubus_apimachinery::{conditions, ObjectExt};
use kubus_container_runtime::{ContainerState, Runtime, RuntimeConfig};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::host::{
    clock_ticks_per_second, cpu_ticks, kill_nats_server, machine_ticks, node_reset, pss_kib, stop, vm_rss_kib,
};
use crate::http::{expect_json, json_request, Conn};
use crate::stats::sorted;

/// A Service range of the bench's own, so its kube-proxy route never takes over a cluster's
/// running on the same machine.
const BENCH_SERVICE_CIDR: &str = "172.31.254.0/24";

/// How long one pod may take to reach Running or to disappear before the run is declared broken.
pub(super) const POD_TIMEOUT: Duration = Duration::from_secs(120);
pub(super) const LABEL: &str = "kubus-bench";

pub(super) struct PodFigures {
    pub(super) sequential: Vec<Duration>,
    pub(super) deleted: Vec<Duration>,
    pub(super) burst: Vec<Duration>,
    pub(super) burst_all_ms: f64,
    /// When the first pod of the burst was Running (from the first create).
    pub(super) burst_first_ms: f64,
    pub(super) burst_gone_ms: f64,
    /// CPU time of the agent and the children it reaped (CNI plugins, shim launchers) during the burst.
    pub(super) agent_cpu_ms: f64,
    /// Share of all cores' time not idle during the burst.
    pub(super) machine_busy: f64,
    pub(super) agent_idle_kib: u64,
    pub(super) agent_busy_kib: u64,
    pub(super) agent_after_kib: u64,
    pub(super) shims: usize,
    pub(super) shims_total_kib: u64,
    pub(super) shims_pss_kib: u64,
}

/// Host names of this run's node, distinct from the test suite's (`kbt*`, `/kubus-t*`), whose
/// leftover sweeps must not take them.
struct NodeNames {
    node_name: String,
    bridge: String,
    cgroup_root: String,
    cluster_cidr: String,
    pod_cidr: String,
}

impl NodeNames {
    fn new(tok: &str) -> NodeNames {
        let seed = u32::from_str_radix(tok, 16).unwrap_or(0);
        let (a, b) = (100 + (seed >> 8) % 100, (seed % 64) * 4);
        NodeNames {
            node_name: format!("bench-{tok}"),
            bridge: format!("kbb{tok}"),
            cgroup_root: format!("/kubus-b{tok}"),
            cluster_cidr: format!("10.{a}.{b}.0/22"),
            pod_cidr: format!("10.{a}.{}.0/24", b + 3),
        }
    }
}

/// The control plane and node agent processes, stopped on drop; then `kubus node-reset` removes
/// what the agent made on the host (containers, shims, mounts, sandboxes, bridge, cgroups).
pub(super) struct ClusterGuard {
    exe: PathBuf,
    dir: PathBuf,
    names: NodeNames,
    control_plane: Option<std::process::Child>,
    agent: Option<std::process::Child>,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        // The agent first, so that nothing recreates what the reset removes.
        if let Some(mut c) = self.agent.take() {
            stop(&mut c);
        }
        node_reset(&self.exe, &self.dir.join("node"), &self.names.bridge, &self.names.cgroup_root);
        if let Some(mut c) = self.control_plane.take() {
            stop(&mut c);
        }
        kill_nats_server(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the watch saw of one pod, stamped when the event arrived.
#[derive(Default, Clone, Copy)]
pub(super) struct Seen {
    pub(super) running: Option<Instant>,
    pub(super) gone: Option<Instant>,
}

pub(super) enum Event {
    Running(String, Instant),
    Deleted(String, Instant),
}

fn is_running(pod: &Pod) -> bool {
    kubus_apimachinery::pod::phase(pod) == "Running"
        && pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| {
            !cs.is_empty() && cs.iter().all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

/// What one watch event line says about a pod: Running, gone, or nothing of interest.
fn event_of(raw: &[u8], at: Instant) -> anyhow::Result<Option<Event>> {
    let ev: WatchEvent<Pod> = serde_json::from_slice(raw).context("watch event")?;
    Ok(match ev {
        WatchEvent::Deleted(pod) => Some(Event::Deleted(pod.name().to_string(), at)),
        WatchEvent::Added(pod) | WatchEvent::Modified(pod) if is_running(&pod) => {
            Some(Event::Running(pod.name().to_string(), at))
        }
        WatchEvent::ErrorStatus(status) => bail!("watch error: {}", serde_json::to_value(status)?),
        WatchEvent::ErrorOther(other) => bail!("watch error: {}", other.0),
        _ => None,
    })
}

/// Streams the pods watch from `rv` into `tx`; returns when the server ends the stream.
pub(super) async fn watch_pods(addr: String, path: String, tx: mpsc::UnboundedSender<Event>) -> anyhow::Result<()> {
    let mut conn = Conn::open(&addr).await?;
    conn.send_head("GET", &path, "application/json", b"").await?;
    let (code, _, _) = conn.read_head().await?;
    if code != 200 {
        bail!("watch {path}: HTTP {code}");
    }
    let mut pending = Vec::new();
    while let Some(chunk) = conn.next_chunk().await? {
        let at = Instant::now();
        pending.extend_from_slice(&chunk);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=pos).collect();
            if let Some(ev) = event_of(&raw, at)? {
                if tx.send(ev).is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// The pods' watch as seen so far, fed from the watch task (stopped with the Watch).
pub(super) struct Watch {
    pub(super) rx: mpsc::UnboundedReceiver<Event>,
    pub(super) seen: HashMap<String, Seen>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    /// Watches the bench's pods (label `LABEL=tok`) from the resourceVersion of a list, so it
    /// sees every later change.
    pub(super) async fn open(addr: &str, tok: &str) -> anyhow::Result<Watch> {
        let selector = format!("labelSelector={LABEL}%3D{tok}");
        let list: List<Pod> =
            serde_json::from_value(expect_json(addr, "GET", &format!("{PODS}?{selector}"), None, &[200]).await?)?;
        let rv = list.metadata.resource_version.context("list without resourceVersion")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let path = format!("{PODS}?watch=true&resourceVersion={rv}&{selector}");
        let task = tokio::spawn(watch_pods(addr.to_string(), path, tx));
        Ok(Watch { rx, seen: HashMap::new(), task })
    }

    /// Takes events until `done(seen)` holds; fails after `timeout` with `what`.
    pub(super) async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&HashMap<String, Seen>) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Event::Running(n, at))) => {
                    self.seen.entry(n).or_default().running.get_or_insert(at);
                }
                Ok(Some(Event::Deleted(n, at))) => {
                    self.seen.entry(n).or_default().gone.get_or_insert(at);
                }
                Ok(None) => bail!("the pods watch ended while waiting for {what}"),
                Err(_) => bail!("{what}: not within {} s", timeout.as_secs()),
            }
        }
        Ok(())
    }
}

pub(super) fn pod(name: &str, tok: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {LABEL: tok}},
        // PID 1 ignores SIGTERM (no handler in `sleep`): a 1 s grace bounds deletion.
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox",
            "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}})
}

pub(super) const PODS: &str = "/api/v1/namespaces/default/pods";

async fn wait_ready(addr: &str, dir: &Path, started: Instant) -> anyhow::Result<()> {
    loop {
        // The kubeconfig is written once the API port serves; it holds the credentials.
        let kubeconfig = dir.join("kubeconfig");
        if kubeconfig.exists() {
            crate::http::register_kubeconfig(&kubeconfig)?;
            if matches!(json_request(addr, "GET", "/readyz", None).await, Ok((200, _))) {
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("kubus up did not get ready; see {}", dir.join("kubus.log").display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Shim processes of the node (from the runtime's own records): how many, total VmRSS and total
/// PSS in KiB.
async fn shims_rss(node_state: &Path, exe: &Path) -> anyhow::Result<(usize, u64, u64)> {
    let rt = Runtime::new(RuntimeConfig {
        shim_command: vec![exe.as_os_str().to_owned(), "shim".into()],
        state_dir: node_state.join("runtime"),
        runc_root: node_state.join("runc"),
        cgroup_root: "/".into(),
    })?;
    let mut n = 0;
    let (mut rss, mut pss) = (0, 0);
    for c in rt.list().await? {
        if let (Some(pid), ContainerState::Running { .. }) = (c.shim_pid, &c.state) {
            rss += vm_rss_kib(pid as u32).context("shim vanished while reading its RSS")?;
            pss += pss_kib(pid as u32).context("shim vanished while reading its PSS")?;
            n += 1;
        }
    }
    Ok((n, rss, pss))
}

/// The bench's control plane (`kubus up --no-node`) as a child, its API address and its NATS
/// URL; the guard stops it (and any agent) and resets the node on drop.
pub(super) async fn start_control_plane(exe: &Path, tok: &str) -> anyhow::Result<(ClusterGuard, String, String)> {
    let dir = std::env::temp_dir().join(format!("kubus-bench-node-{tok}"));
    std::fs::create_dir_all(&dir)?;
    let mut guard = ClusterGuard {
        exe: exe.to_path_buf(),
        dir: dir.clone(),
        names: NodeNames::new(tok),
        control_plane: None,
        agent: None,
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    guard.control_plane = Some(
        Command::new(exe)
            .args(["up", "--no-node", "--nats-listen", "127.0.0.1:0", "--cluster", "bench", "--dns-port", "0"])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--api-port", &port.to_string(), "--cluster-cidr", &guard.names.cluster_cidr])
            .args(["--service-cidr", BENCH_SERVICE_CIDR])
            .env("KUBUS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("kubus.log"))?)
            .spawn()?,
    );
    wait_ready(&addr, &dir, started).await?;
    let nats = std::fs::read_to_string(dir.join("nats.url"))?.trim().to_string();
    Ok((guard, addr, nats))
}

impl ClusterGuard {
    /// Starts the node agent (`kubus node`, with `extra` flags) on the bench's node and data
    /// dir, after stopping the one running if any (its containers keep running: the new agent
    /// adopts them); its log is appended to `node.log`. Returns its pid.
    pub(super) fn start_agent(&mut self, nats: &str, extra: &[&str]) -> anyhow::Result<u32> {
        if let Some(mut old) = self.agent.take() {
            stop(&mut old);
        }
        let n = &self.names;
        let log = std::fs::File::options().create(true).append(true).open(self.dir.join("node.log"))?;
        // The node's identity, from the bench cluster's CA (as `kubus kubeconfig user` makes it
        // for a machine that joins).
        let out = Command::new(&self.exe)
            .args(["kubeconfig", "user", "--cluster", "bench", "--org", "system:nodes", "--client-name"])
            .arg(format!("system:node:{}", n.node_name))
            .arg("--data-dir")
            .arg(&self.dir)
            .output()?;
        anyhow::ensure!(out.status.success(), "kubus kubeconfig user: {}", String::from_utf8_lossy(&out.stderr));
        let kubeconfig = self.dir.join("node.kubeconfig");
        std::fs::write(&kubeconfig, &out.stdout)?;
        let agent = Command::new(&self.exe)
            .args(["node", "--cluster", "bench", "--data-dir"])
            .arg(self.dir.join("node"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            // The URL holds the NATS password: in the environment, not on the command line.
            .env("KUBUS_NATS", nats)
            .args(["--node-name", &n.node_name, "--bridge", &n.bridge, "--cgroup-root", &n.cgroup_root])
            .args([
                "--pod-cidr",
                &n.pod_cidr,
                "--node-cluster-cidr",
                &n.cluster_cidr,
                "--service-cidr",
                BENCH_SERVICE_CIDR,
            ])
            .arg("--pod-log-dir")
            .arg(self.dir.join("pod-logs"))
            .args(extra)
            .env("KUBUS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let pid = agent.id();
        self.agent = Some(agent);
        Ok(pid)
    }

    /// Waits until the node is Ready, for at most `timeout` from `started`.
    pub(super) async fn wait_node_ready(&self, addr: &str, started: Instant, timeout: Duration) -> anyhow::Result<()> {
        let node_path = format!("/api/v1/nodes/{}", self.names.node_name);
        loop {
            if let Ok((200, node)) = json_request(addr, "GET", &node_path, None).await {
                if serde_json::from_value::<Node>(node)
                    .is_ok_and(|n| conditions::is_true(conditions::of_node(&n), "Ready"))
                {
                    return Ok(());
                }
            }
            if started.elapsed() > timeout {
                bail!("node not Ready; see {}", self.dir.join("node.log").display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(super) fn node_name(&self) -> &str {
        &self.names.node_name
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

pub(super) async fn pods_and_rss(exe: &Path, tok: &str, sequential: usize, burst: usize) -> anyhow::Result<PodFigures> {
    let started = Instant::now();
    let (mut guard, addr, nats) = start_control_plane(exe, tok).await?;
    let dir = guard.dir.clone();
    let agent_pid = guard.start_agent(&nats, &[])?;
    guard.wait_node_ready(&addr, started, Duration::from_secs(90)).await?;
    println!("control plane and node {} Ready after {:.1} s", guard.names.node_name, started.elapsed().as_secs_f64());
    // Let start-up work (image build, network setup, first status writes) settle before "idle".
    tokio::time::sleep(Duration::from_secs(3)).await;
    let agent_idle_kib = vm_rss_kib(agent_pid).context("node agent exited")?;

    let mut watch = Watch::open(&addr, tok).await?;

    let mut figs = PodFigures {
        sequential: Vec::new(),
        deleted: Vec::new(),
        burst: Vec::new(),
        burst_all_ms: 0.0,
        burst_first_ms: 0.0,
        burst_gone_ms: 0.0,
        agent_cpu_ms: 0.0,
        machine_busy: 0.0,
        agent_idle_kib,
        agent_busy_kib: 0,
        agent_after_kib: 0,
        shims: 0,
        shims_total_kib: 0,
        shims_pss_kib: 0,
    };
    let seq_span = tracing::info_span!("bench.sequential", pods = sequential);
    async {
        for i in 0..sequential {
            let name = format!("b{tok}-s{i}");
            let t0 = Instant::now();
            expect_json(&addr, "POST", PODS, Some(&pod(&name, tok)), &[201]).await?;
            watch
                .until(&format!("{name} Running"), POD_TIMEOUT, |s| s.get(&name).is_some_and(|p| p.running.is_some()))
                .await?;
            figs.sequential.push(watch.seen[&name].running.unwrap_or(t0) - t0);
            let t1 = Instant::now();
            expect_json(&addr, "DELETE", &format!("{PODS}/{name}"), None, &[200, 202]).await?;
            watch
                .until(&format!("{name} gone"), POD_TIMEOUT, |s| s.get(&name).is_some_and(|p| p.gone.is_some()))
                .await?;
            figs.deleted.push(watch.seen[&name].gone.unwrap_or(t1) - t1);
        }
        Ok::<_, anyhow::Error>(())
    }
    .instrument(seq_span)
    .await?;

    let names: Vec<String> = (0..burst).map(|i| format!("b{tok}-c{i}")).collect();
    let cpu0 = (cpu_ticks(agent_pid), machine_ticks());
    let creates = {
        let (addr, tok, names) = (addr.clone(), tok.to_string(), names.clone());
        tokio::spawn(async move {
            let sends = names.iter().map(|name| {
                let (addr, body) = (addr.clone(), pod(name, &tok));
                async move {
                    let t = Instant::now();
                    expect_json(&addr, "POST", PODS, Some(&body), &[201]).await?;
                    Ok::<_, anyhow::Error>(t)
                }
            });
            futures::future::try_join_all(sends).await
        })
    };
    let all_running = watch
        .until(&format!("{burst} pods Running"), POD_TIMEOUT * 2, |s| {
            names.iter().all(|n| s.get(n).is_some_and(|p| p.running.is_some()))
        })
        .instrument(tracing::info_span!("bench.burst", pods = burst))
        .await;
    let sent = creates.await??;
    all_running?;
    let first = sent.iter().min().copied().unwrap_or_else(Instant::now);
    let (mut earliest, mut last) = (None::<Instant>, first);
    for (name, t) in names.iter().zip(&sent) {
        let at = watch.seen[name].running.unwrap_or(*t);
        figs.burst.push(at - *t);
        last = last.max(at);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    figs.burst_all_ms = (last - first).as_secs_f64() * 1e3;
    figs.burst_first_ms = (earliest.unwrap_or(first) - first).as_secs_f64() * 1e3;
    if let ((Some(a0), Some((b0, t0))), Some(a1), Some((b1, t1))) = (cpu0, cpu_ticks(agent_pid), machine_ticks()) {
        figs.agent_cpu_ms = (a1 - a0) as f64 * 1e3 / clock_ticks_per_second();
        figs.machine_busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64;
    }
    figs.agent_busy_kib = vm_rss_kib(agent_pid).context("node agent exited")?;
    let node_state = dir.join("node").canonicalize()?;
    (figs.shims, figs.shims_total_kib, figs.shims_pss_kib) = shims_rss(&node_state, exe).await?;
    if figs.shims != burst {
        bail!("{} running shims for {burst} running pods", figs.shims);
    }

    let t0 = Instant::now();
    futures::future::try_join_all(names.iter().map(|name| {
        let (addr, path) = (&addr, format!("{PODS}/{name}"));
        async move { expect_json(addr, "DELETE", &path, None, &[200, 202]).await }
    }))
    .await?;
    watch
        .until(&format!("{burst} pods gone"), POD_TIMEOUT * 2, |s| {
            names.iter().all(|n| s.get(n).is_some_and(|p| p.gone.is_some()))
        })
        .await?;
    let last_gone = names.iter().filter_map(|n| watch.seen[n].gone).max().unwrap_or(t0);
    figs.burst_gone_ms = (last_gone - t0).as_secs_f64() * 1e3;
    tokio::time::sleep(Duration::from_secs(3)).await;
    figs.agent_after_kib = vm_rss_kib(agent_pid).context("node agent exited")?;
    drop(watch);
    figs.sequential = sorted(figs.sequential);
    figs.deleted = sorted(figs.deleted);
    figs.burst = sorted(figs.burst);
    drop(guard);
    Ok(figs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    fn pod_with(phase: &str, states: &[&str]) -> Pod {
        let cs: Vec<Value> = states
            .iter()
            .map(|s| json!({"name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0, "state": {*s: {}}}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": phase, "containerStatuses": cs}}))
            .unwrap()
    }

    #[test]
    fn running_needs_the_phase_and_every_container_running() {
        assert!(is_running(&pod_with("Running", &["running"])));
        assert!(!is_running(&pod_with("Running", &["running", "waiting"])));
        assert!(!is_running(&pod_with("Pending", &["running"])));
        assert!(!is_running(&pod_with("Running", &[])));
    }

    #[test]
    fn watch_lines_become_events() {
        let at = Instant::now();
        let line = |t: &str, obj: Value| json!({"type": t, "object": obj}).to_string().into_bytes();
        assert!(matches!(
            event_of(&line("MODIFIED", json!(pod_with("Running", &["running"]))), at).unwrap(),
            Some(Event::Running(n, _)) if n == "p"
        ));
        assert!(event_of(&line("ADDED", json!(pod_with("Pending", &["waiting"]))), at).unwrap().is_none());
        assert!(matches!(
            event_of(&line("DELETED", json!(pod_with("Running", &["running"]))), at).unwrap(),
            Some(Event::Deleted(n, _)) if n == "p"
        ));
        assert!(event_of(&line("BOOKMARK", json!({"metadata": {"resourceVersion": "9"}})), at).unwrap().is_none());
        assert!(event_of(&line("ERROR", json!({"kind": "Status", "code": 410})), at).is_err());
        assert!(event_of(b"{not json", at).is_err());
    }

    #[test]
    fn node_names_fit_and_stay_clear_of_the_test_suite() {
        for tok in ["000000", "ffffff", "a1b2c3"] {
            let n = NodeNames::new(tok);
            // Linux interface names are at most 15 bytes.
            assert!(n.bridge.len() <= 15, "{}", n.bridge);
            assert!(!n.bridge.starts_with("kbt") && !n.cgroup_root.starts_with("/kubus-t"));
            let (net, len) = n.cluster_cidr.split_once('/').unwrap();
            assert_eq!(len, "22");
            let net: Vec<u32> = net.split('.').map(|o| o.parse().unwrap()).collect();
            let pod: Vec<u32> = n.pod_cidr.trim_end_matches("/24").split('.').map(|o| o.parse().unwrap()).collect();
            assert_eq!((pod[0], pod[1]), (net[0], net[1]));
            assert!(
                net[2].is_multiple_of(4) && (net[2]..net[2] + 4).contains(&pod[2]) && pod[2] < 256,
                "{n:?}",
                n = n.pod_cidr
            );
        }
    }

    /// Serves one canned HTTP response per connection.
    async fn serve(response: Vec<u8>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let response = response.clone();
                tokio::spawn(async move {
                    let mut r = BufReader::new(&mut s);
                    let mut line = String::new();
                    while r.read_line(&mut line).await.is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let _ = s.write_all(&response).await;
                });
            }
        });
        addr
    }

    fn chunked(parts: &[&[u8]]) -> Vec<u8> {
        let mut out =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n".to_vec();
        for p in parts {
            out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[tokio::test]
    async fn client_reads_plain_and_chunked_bodies() {
        let addr = serve(b"HTTP/1.1 201 Created\r\nContent-Length: 11\r\n\r\n{\"a\": true}".to_vec()).await;
        let (code, v) = json_request(&addr, "POST", "/x", Some(&json!({}))).await.unwrap();
        assert_eq!((code, v), (201, json!({"a": true})));
        let addr = serve(chunked(&[b"{\"items\":", b" [1, 2]}"])).await;
        let (code, v) = json_request(&addr, "GET", "/x", None).await.unwrap();
        assert_eq!((code, v), (200, json!({"items": [1, 2]})));
        let addr = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_vec()).await;
        assert!(expect_json(&addr, "GET", "/x", None, &[200]).await.unwrap_err().to_string().contains("404"));
    }

    #[tokio::test]
    async fn watch_events_split_across_chunks_arrive_whole_and_in_order() {
        let running = json!({"type": "MODIFIED", "object": pod_with("Running", &["running"])}).to_string() + "\n";
        let pending = json!({"type": "ADDED", "object": pod_with("Pending", &[])}).to_string() + "\n";
        let deleted = json!({"type": "DELETED", "object": pod_with("Running", &["running"])}).to_string() + "\n";
        let stream = format!("{pending}{running}{deleted}").into_bytes();
        // Cut the stream mid-event so that events straddle chunk boundaries.
        let (a, rest) = stream.split_at(pending.len() + 7);
        let (b, c) = rest.split_at(running.len());
        let addr = serve(chunked(&[a, b, c])).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        watch_pods(addr, "/api/v1/pods?watch=true".into(), tx).await.unwrap();
        assert!(matches!(rx.recv().await, Some(Event::Running(n, _)) if n == "p"));
        assert!(matches!(rx.recv().await, Some(Event::Deleted(n, _)) if n == "p"));
        assert!(rx.recv().await.is_none());
        let addr = serve(b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        let (tx, _rx) = mpsc::unbounded_channel();
        assert!(watch_pods(addr, "/w".into(), tx).await.is_err());
    }
}
