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

use crate::cmd::bench::{pct, stop, token, vm_rss_kib, Conn};
use crate::cmd::up::is_root;
use anyhow::{bail, Context as _};
use kubus_image::{ImageStore, Registries};
use kubus_node_runtime::cgroups::{CgroupLayout, CgroupResources};
use kubus_node_runtime::oci_spec::runtime::{LinuxBuilder, ProcessBuilder, RootBuilder, Spec};
use kubus_node_runtime::{ContainerState, CreateContainer, Runtime, RuntimeConfig};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// A Service range of the bench's own, so its kube-proxy route never takes over a cluster's
/// running on the same machine.
const BENCH_SERVICE_CIDR: &str = "172.31.254.0/24";

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

/// How long one pod may take to reach Running or to disappear before the run is declared broken.
const POD_TIMEOUT: Duration = Duration::from_secs(120);
const LABEL: &str = "kubus-bench";

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

fn line(name: &str, samples: &[Duration]) {
    println!(
        "{name:<44} {:>4} runs  p50 {:>8.1} ms  p99 {:>8.1} ms",
        samples.len(),
        pct(samples, 0.5),
        pct(samples, 0.99)
    );
}

/// Proportional set size: shared pages (the kubus binary's text) split among their users.
fn pss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("Pss:")?.split_whitespace().next()?.parse().ok())
}

/// utime + stime + cutime + cstime of a process, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state is the first, utime the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    fields.get(11..15)?.iter().map(|f| f.parse::<u64>().ok()).sum()
}

/// (busy, total) clock ticks of all cores from /proc/stat; idle and iowait count as not busy.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// SIGKILLs every process whose command line mentions `needle` (a path carrying this run's
/// token), e.g. shims left by a failed phase.
fn kill_processes_mentioning(needle: &str) {
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            let _ = Command::new("kill").args(["-KILL", &name]).status();
        }
    }
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

// ---- the runtime path ----

struct RuntimeFigures {
    kubus: Vec<Duration>,
    runc: Vec<Duration>,
    /// Per operation of the kubus runtime (create, start, wait for exit, delete).
    ops: Vec<(&'static str, Vec<Duration>)>,
}

/// Everything the runtime phase made: the shims, the bundle's overlay mount, the cgroup parent,
/// runc's containers and the temp dir. Removed on drop, also after a failure.
struct RuntimeGuard {
    root: PathBuf,
    bundle: PathBuf,
    runc_root: PathBuf,
    cgroup_parent: String,
    layout: CgroupLayout,
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        // Shims run `kubus shim ... --dir <root>/state/shims/<id>`: their command line names the root.
        kill_processes_mentioning(&format!("{}/", self.root.display()));
        for e in std::fs::read_dir(&self.runc_root).into_iter().flatten().flatten() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "--force"])
                .arg(e.file_name())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Err(e) = self.layout.remove(&self.cgroup_parent) {
            eprintln!("cleanup: cgroup {}: {e}", self.cgroup_parent);
        }
        rmdir_in_every_hierarchy(&self.cgroup_parent);
        if let Err(e) = ImageStore::unmount_rootfs(&self.bundle) {
            eprintln!("cleanup: rootfs {}: {e}", self.bundle.display());
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// runc also makes the parent in the named `systemd` hierarchy and in cgroup2's `unified/` on
/// a hybrid host, which `CgroupLayout` (the pods' controllers) does not manage, and removes only
/// its leaves: rmdir the (by now empty) path in every mounted cgroup hierarchy.
fn rmdir_in_every_hierarchy(cgroup: &str) {
    fn rmdir_tree(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    for l in info.lines() {
        let Some((mount, fs)) = l.split_once(" - ") else { continue };
        if matches!(fs.split_whitespace().next(), Some("cgroup" | "cgroup2")) {
            if let Some(point) = mount.split_whitespace().nth(4) {
                rmdir_tree(&Path::new(point).join(cgroup.trim_start_matches('/')));
            }
        }
    }
}

/// The OCI spec the runtime crate's tests use: default namespaces and capabilities,
/// noNewPrivileges, the container's leaf below `cgroup_parent`.
fn echo_spec(id: &str, rootfs: &Path, cgroup_parent: &str) -> anyhow::Result<Spec> {
    let mut spec = Spec::default();
    let caps = spec.process().as_ref().and_then(|p| p.capabilities().clone()).context("default capabilities")?;
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).context("default namespaces")?;
    spec.set_process(Some(
        ProcessBuilder::default()
            .args(vec!["echo".to_string(), "hi".to_string()])
            .env(vec!["PATH=/bin".to_string(), "HOME=/root".to_string()])
            .cwd("/")
            .no_new_privileges(true)
            .capabilities(caps)
            .build()?,
    ));
    spec.set_root(Some(RootBuilder::default().path(rootfs).readonly(false).build()?));
    spec.set_hostname(Some("bench".to_string()));
    spec.set_linux(Some(
        LinuxBuilder::default()
            .namespaces(namespaces)
            .cgroups_path(PathBuf::from(format!("{cgroup_parent}/{id}")))
            .build()?,
    ));
    Ok(spec)
}

async fn runtime_path(exe: &Path, tok: &str, runs: usize) -> anyhow::Result<RuntimeFigures> {
    let root = std::env::temp_dir().join(format!("kubus-bench-rt-{tok}"));
    std::fs::create_dir_all(&root)?;
    let layout = CgroupLayout::detect()?;
    let guard = RuntimeGuard {
        bundle: root.join("bundle"),
        runc_root: root.join("runc-state"),
        cgroup_parent: format!("/kubus-b{tok}-rt"),
        layout,
        root,
    };
    guard.layout.create(&guard.cgroup_parent, &CgroupResources::default())?;
    let images = ImageStore::open(guard.root.join("images"), Registries::default())?;
    let image = images.install_busybox(Path::new("/bin/busybox")).context("building busybox (busybox-static)")?;
    let rootfs = images.mount_rootfs(&image, &guard.bundle)?;
    let rt = Runtime::new(RuntimeConfig {
        shim_command: vec![exe.as_os_str().to_owned(), "shim".into()],
        state_dir: guard.root.join("state"),
        runc_root: guard.root.join("libcontainer"),
        cgroup_root: guard.cgroup_parent.clone(),
    })?;
    std::fs::create_dir_all(guard.root.join("logs"))?;
    std::fs::create_dir_all(&guard.runc_root)?;

    let mut figs = RuntimeFigures { kubus: Vec::new(), runc: Vec::new(), ops: Vec::new() };
    let mut ops: [Vec<Duration>; 4] = Default::default();
    // Run 0 of each warms caches (binaries, busybox pages) and is not counted; kubus and runc
    // alternate so that machine noise hits both alike.
    for i in 0..=runs {
        let id = format!("bench-{tok}-k{i}");
        let log = guard.root.join("logs").join(format!("{id}.log"));
        let spec = echo_spec(&id, &rootfs, &guard.cgroup_parent)?;
        let req = CreateContainer {
            id: id.clone(),
            spec,
            bundle_dir: guard.bundle.clone(),
            log_path: log.clone(),
            labels: BTreeMap::new(),
            stdin: false,
            stdin_once: false,
        };
        let t0 = Instant::now();
        rt.create(req).await?;
        let t1 = Instant::now();
        rt.start(&id).await?;
        let t2 = Instant::now();
        let exit = rt.wait(&id).await?;
        let t3 = Instant::now();
        rt.delete(&id).await?;
        let t4 = Instant::now();
        if exit.code != 0 {
            bail!("kubus run {i}: `echo hi` exited with {}", exit.code);
        }
        let out = std::fs::read_to_string(&log)?;
        if !out.lines().any(|l| l.ends_with(" stdout F hi")) {
            bail!("kubus run {i}: the log lacks `hi`: {out:?}");
        }
        if i > 0 {
            figs.kubus.push(t4 - t0);
            for (k, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3].into_iter().enumerate() {
                ops[k].push(d);
            }
        }

        let id = format!("bench-{tok}-r{i}");
        let t0 = Instant::now();
        // Writing config.json is part of runc's path as it is part of `Runtime::create`.
        let spec = echo_spec(&id, &rootfs, &guard.cgroup_parent)?;
        tokio::fs::write(guard.bundle.join("config.json"), serde_json::to_vec_pretty(&spec)?).await?;
        let out = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(&guard.runc_root)
            .args(["run", "--bundle"])
            .arg(&guard.bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running runc (apt-get install runc)")?;
        let took = t0.elapsed();
        if !out.status.success() || out.stdout != b"hi\n" {
            bail!(
                "runc run {i}: {} stdout {:?} stderr {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if i > 0 {
            figs.runc.push(took);
        }
    }
    if !rt.list().await?.is_empty() {
        bail!("containers left after delete");
    }
    let [c, s, w, d] = ops;
    figs.ops = vec![
        ("create (shim up, container built)", sorted(c)),
        ("start", sorted(s)),
        ("wait (exit recorded)", sorted(w)),
        ("delete (shim gone)", sorted(d)),
    ];
    figs.kubus = sorted(figs.kubus);
    figs.runc = sorted(figs.runc);
    drop(guard);
    Ok(figs)
}

// ---- pods through the control plane and a node agent ----

struct PodFigures {
    sequential: Vec<Duration>,
    deleted: Vec<Duration>,
    burst: Vec<Duration>,
    burst_all_ms: f64,
    /// When the first pod of the burst was Running (from the first create).
    burst_first_ms: f64,
    burst_gone_ms: f64,
    /// CPU time of the agent and the children it reaped (CNI plugins, shim launchers) during the burst.
    agent_cpu_ms: f64,
    /// Share of all cores' time not idle during the burst.
    machine_busy: f64,
    agent_idle_kib: u64,
    agent_busy_kib: u64,
    agent_after_kib: u64,
    shims: usize,
    shims_total_kib: u64,
    shims_pss_kib: u64,
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
struct ClusterGuard {
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
        if let Some(mut c) = self.control_plane.take() {
            stop(&mut c);
        }
        // A control plane killed outright leaves its nats-server behind.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nats-server.pid")) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request on a fresh connection; status and JSON body.
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

/// What the watch saw of one pod, stamped when the event arrived.
#[derive(Default, Clone, Copy)]
struct Seen {
    running: Option<Instant>,
    gone: Option<Instant>,
}

enum Event {
    Running(String, Instant),
    Deleted(String, Instant),
}

fn is_running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["state"]["running"].is_object()))
}

/// What one watch event line says about a pod: Running, gone, or nothing of interest.
fn event_of(raw: &[u8], at: Instant) -> anyhow::Result<Option<Event>> {
    let ev: Value = serde_json::from_slice(raw).context("watch event")?;
    let name = ev["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string();
    Ok(match ev["type"].as_str() {
        Some("DELETED") => Some(Event::Deleted(name, at)),
        Some("ADDED" | "MODIFIED") if is_running(&ev["object"]) => Some(Event::Running(name, at)),
        Some("ERROR") => bail!("watch error: {}", ev["object"]),
        _ => None,
    })
}

/// Streams the pods watch from `rv` into `tx`; returns when the server ends the stream.
async fn watch_pods(addr: String, path: String, tx: mpsc::UnboundedSender<Event>) -> anyhow::Result<()> {
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

/// The pods' watch as seen so far, fed from the watch task.
struct Watch {
    rx: mpsc::UnboundedReceiver<Event>,
    seen: HashMap<String, Seen>,
}

impl Watch {
    /// Takes events until `done(seen)` holds; fails after `timeout` with `what`.
    async fn until(
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

fn pod(name: &str, tok: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {LABEL: tok}},
        // PID 1 ignores SIGTERM (no handler in `sleep`): a 1 s grace bounds deletion.
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox",
            "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}})
}

const PODS: &str = "/api/v1/namespaces/default/pods";

async fn wait_ready(addr: &str, dir: &Path, started: Instant) -> anyhow::Result<()> {
    loop {
        if dir.join("kubeconfig").exists() && matches!(http(addr, "GET", "/readyz", None).await, Ok((200, _))) {
            return Ok(());
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

async fn pods_and_rss(exe: &Path, tok: &str, sequential: usize, burst: usize) -> anyhow::Result<PodFigures> {
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
    let nats = std::fs::read_to_string(dir.join("nats.url"))?;
    let n = &guard.names;
    let agent = Command::new(exe)
        .args(["node", "--cluster", "bench", "--nats", nats.trim(), "--data-dir"])
        .arg(dir.join("node"))
        .args(["--node-name", &n.node_name, "--bridge", &n.bridge, "--cgroup-root", &n.cgroup_root])
        .args(["--pod-cidr", &n.pod_cidr, "--node-cluster-cidr", &n.cluster_cidr, "--service-cidr", BENCH_SERVICE_CIDR])
        .arg("--pod-log-dir")
        .arg(dir.join("pod-logs"))
        .env("KUBUS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log"))?)
        .spawn()?;
    let agent_pid = agent.id();
    guard.agent = Some(agent);
    let node_path = format!("/api/v1/nodes/{}", guard.names.node_name);
    loop {
        if let Ok((200, node)) = http(&addr, "GET", &node_path, None).await {
            if kubus_apimachinery::conditions::is_true(&node, "Ready") {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("node not Ready; see {}", dir.join("node.log").display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("control plane and node {} Ready after {:.1} s", guard.names.node_name, started.elapsed().as_secs_f64());
    // Let start-up work (image build, network setup, first status writes) settle before "idle".
    tokio::time::sleep(Duration::from_secs(3)).await;
    let agent_idle_kib = vm_rss_kib(agent_pid).context("node agent exited")?;

    // The watch opens at the resourceVersion of a list, so it sees every later change.
    let selector = format!("labelSelector={LABEL}%3D{tok}");
    let list = expect(&addr, "GET", &format!("{PODS}?{selector}"), None, &[200]).await?;
    let rv = list["metadata"]["resourceVersion"].as_str().context("list without resourceVersion")?.to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let watch_task =
        tokio::spawn(watch_pods(addr.clone(), format!("{PODS}?watch=true&resourceVersion={rv}&{selector}"), tx));
    let mut watch = Watch { rx, seen: HashMap::new() };

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
            expect(&addr, "POST", PODS, Some(&pod(&name, tok)), &[201]).await?;
            watch
                .until(&format!("{name} Running"), POD_TIMEOUT, |s| s.get(&name).is_some_and(|p| p.running.is_some()))
                .await?;
            figs.sequential.push(watch.seen[&name].running.unwrap_or(t0) - t0);
            let t1 = Instant::now();
            expect(&addr, "DELETE", &format!("{PODS}/{name}"), None, &[200, 202]).await?;
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
                    expect(&addr, "POST", PODS, Some(&body), &[201]).await?;
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
        async move { expect(addr, "DELETE", &path, None, &[200, 202]).await }
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
    watch_task.abort();
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

    fn pod_with(phase: &str, states: &[&str]) -> Value {
        let cs: Vec<Value> = states.iter().map(|s| json!({"name": "main", "state": {*s: {}}})).collect();
        json!({"metadata": {"name": "p"}, "status": {"phase": phase, "containerStatuses": cs}})
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
            event_of(&line("MODIFIED", pod_with("Running", &["running"])), at).unwrap(),
            Some(Event::Running(n, _)) if n == "p"
        ));
        assert!(event_of(&line("ADDED", pod_with("Pending", &["waiting"])), at).unwrap().is_none());
        assert!(matches!(
            event_of(&line("DELETED", pod_with("Running", &["running"])), at).unwrap(),
            Some(Event::Deleted(n, _)) if n == "p"
        ));
        assert!(event_of(&line("BOOKMARK", json!({"metadata": {"resourceVersion": "9"}})), at).unwrap().is_none());
        assert!(event_of(&line("ERROR", json!({"kind": "Status", "code": 410})), at).is_err());
        assert!(event_of(b"{not json", at).is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&v, 0.5), 51.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert_eq!(pct(&v[..1], 0.99), 1.0);
        assert!(pct(&[], 0.5).is_nan());
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

    #[test]
    fn cpu_ticks_grow_with_work() {
        let me = std::process::id();
        let (a0, (b0, t0)) = (cpu_ticks(me).unwrap(), machine_ticks().unwrap());
        // Spin for 300 ms of CPU: at 100 Hz that is ~30 ticks for this process.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let (a1, (b1, t1)) = (cpu_ticks(me).unwrap(), machine_ticks().unwrap());
        let hz = clock_ticks_per_second();
        assert!((a1 - a0) as f64 / hz >= 0.1, "process ticks {a0} -> {a1} at {hz} Hz");
        assert!(b1 - b0 >= a1 - a0 && t1 - t0 >= b1 - b0, "machine busy {b0}->{b1}, total {t0}->{t1}");
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
        let (code, v) = http(&addr, "POST", "/x", Some(&json!({}))).await.unwrap();
        assert_eq!((code, v), (201, json!({"a": true})));
        let addr = serve(chunked(&[b"{\"items\":", b" [1, 2]}"])).await;
        let (code, v) = http(&addr, "GET", "/x", None).await.unwrap();
        assert_eq!((code, v), (200, json!({"items": [1, 2]})));
        let addr = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_vec()).await;
        assert!(expect(&addr, "GET", "/x", None, &[200]).await.unwrap_err().to_string().contains("404"));
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

    /// The sweep runc's leftovers need: a path in the named systemd hierarchy and in cgroup2,
    /// with a child, is gone afterwards (root; this host has both hierarchies).
    #[test]
    fn cgroup_path_is_removed_from_every_hierarchy() {
        struct Sweep(String);
        impl Drop for Sweep {
            fn drop(&mut self) {
                rmdir_in_every_hierarchy(&self.0);
            }
        }
        let path = format!("/kubus-btest{}", token().unwrap());
        let _sweep = Sweep(path.clone());
        let mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.split_once(" - ").is_some_and(|(_, fs)| fs.starts_with("cgroup")))
            .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
            .collect();
        assert!(!mounts.is_empty(), "no cgroup hierarchy mounted");
        for m in &mounts {
            std::fs::create_dir_all(m.join(path.trim_start_matches('/')).join("leaf")).unwrap();
        }
        rmdir_in_every_hierarchy(&path);
        for m in &mounts {
            assert!(!m.join(path.trim_start_matches('/')).exists(), "left in {}", m.display());
        }
    }
}
