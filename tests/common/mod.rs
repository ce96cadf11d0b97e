//! The end-to-end harness: a real `kubus up` (with its embedded Debian nats-server) in a
//! private data dir on free ports, driven by the real kubectl and raw HTTP.
#![allow(dead_code)]

pub mod hosts;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    keep_dir: bool,
    /// Set when this cluster runs a real node agent: what to sweep on drop.
    pub node: Option<NodeNames>,
    /// The extra `kubus up` flags it was started with (a restart uses them again).
    args: Vec<String>,
}

/// Unique host-level names of one test's node (bridge, cgroup root, pod CIDR, node name), so
/// tests never collide and everything they made can be found and removed.
#[derive(Debug, Clone)]
pub struct NodeNames {
    pub token: String,
    pub node_name: String,
    pub bridge: String,
    pub cgroup_root: String,
    /// Four /24 node blocks, unique per test (the host routes them all).
    pub cluster_cidr: String,
    /// A block of the cluster CIDR for a standalone agent.
    pub pod_cidr: String,
    /// The cluster's Service range (kube-proxy routes it to this node's bridge).
    pub service_cidr: String,
}

impl NodeNames {
    pub fn new() -> NodeNames {
        use std::hash::{BuildHasher, Hasher};
        // Tests start in parallel within microseconds of each other, so the seed is random
        // rather than the clock (two nodes on one pod range route each other's pod IPs to the
        // wrong bridge). Ranges taken in this process or routed on the host are skipped.
        static TAKEN: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
        static TAKEN_SERVICES: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
        let routes = Command::new("ip")
            .args(["-4", "route"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
            let (a, b) = (100 + (seed >> 24) % 100, ((seed >> 32) % 64) * 4);
            let (x, y) = (16 + (seed >> 40) % 16, (seed >> 44) % 256);
            let routed = (b..b + 4).any(|c| routes.contains(&format!("10.{a}.{c}.")))
                || routes.contains(&format!("172.{x}.{y}.0/24"));
            let mut services = TAKEN_SERVICES.lock().unwrap_or_else(|p| p.into_inner());
            if routed || taken.contains(&(a, b)) || services.contains(&(x, y)) {
                continue;
            }
            taken.push((a, b));
            services.push((x, y));
            let token = format!("{:06x}", seed & 0xff_ffff);
            return NodeNames {
                node_name: format!("node-t{token}"),
                bridge: format!("kbt{token}"),
                cgroup_root: format!("/kubus-t{token}"),
                cluster_cidr: format!("10.{a}.{b}.0/22"),
                pod_cidr: format!("10.{a}.{}.0/24", b + 3),
                service_cidr: format!("172.{x}.{y}.0/24"),
                token,
            };
        }
    }

    /// The flags a node agent of these names takes.
    pub fn flags(&self, dir: &Path) -> Vec<String> {
        vec![
            "--node-name".into(),
            self.node_name.clone(),
            "--bridge".into(),
            self.bridge.clone(),
            "--cgroup-root".into(),
            self.cgroup_root.clone(),
            "--pod-log-dir".into(),
            dir.join("pod-logs").display().to_string(),
        ]
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn unique_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("kubus-e2e-{tag}-{}-{nanos}", std::process::id()))
}

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn expect_ok(self) -> String {
        assert!(self.ok, "command failed\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.stdout
    }
    #[track_caller]
    pub fn expect_err(self, needle: &str) -> String {
        assert!(!self.ok, "command succeeded but should have failed\nstdout: {}", self.stdout);
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", self.stderr);
        self.stderr
    }
}

impl Cluster {
    pub fn start(tag: &str) -> Cluster {
        Cluster::start_with(tag, &[])
    }

    /// A cluster with extra `kubus up` flags (e.g. `--sim-nodes 3`).
    pub fn start_with(tag: &str, extra: &[&str]) -> Cluster {
        let dir = unique_dir(tag);
        std::fs::create_dir_all(&dir).unwrap();
        Cluster::launch(dir, free_port(), extra, None)
    }

    pub fn start_in(dir: PathBuf, port: u16) -> Cluster {
        Cluster::launch(dir, port, &[], None)
    }

    /// A cluster whose `kubus up` also runs a real node agent (root: containers, CNI, cgroups).
    pub fn start_with_node(tag: &str, extra: &[&str]) -> Cluster {
        Cluster::start_with_node_prepared(tag, extra, |_| {})
    }

    /// As `start_with_node`, with `prepare` run on the fresh data dir before `kubus up` (e.g. to
    /// drop image archives into `node/images/import/`).
    pub fn start_with_node_prepared(tag: &str, extra: &[&str], prepare: impl FnOnce(&Path)) -> Cluster {
        let dir = unique_dir(tag);
        std::fs::create_dir_all(&dir).unwrap();
        prepare(&dir);
        let names = NodeNames::new();
        let mut args: Vec<String> = names.flags(&dir);
        args.extend(["--cluster-cidr".to_string(), names.cluster_cidr.clone()]);
        args.extend(["--service-cidr".to_string(), names.service_cidr.clone()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let c = Cluster::launch(dir, free_port(), &args, Some(names.clone()));
        // Ready: the node registered (its built-in images exist by then) and has its pod network.
        eventually(60, || (c.node_ready_status(&names.node_name) == "True").then_some(()));
        c
    }

    /// The status of a node's Ready condition ("True", "False", "Unknown"; empty if none).
    pub fn node_ready_status(&self, node: &str) -> String {
        let jsonpath = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        self.kubectl(&["get", "node", node, "-o", jsonpath]).stdout
    }

    /// Runs `wget -qO- url` `n` times from `pod` (busybox) until every one answers; the bodies.
    pub fn wget_lines(&self, pod: &str, url: &str, n: usize) -> Vec<String> {
        let script = format!("for i in $(seq {n}); do timeout 3 wget -qO- {url}; done");
        eventually(60, || {
            let r = self.kubectl(&["exec", pod, "--", "sh", "-c", &script]);
            let lines: Vec<String> = r.stdout.lines().map(str::to_string).collect();
            (lines.len() == n).then_some(lines)
        })
    }

    fn launch(dir: PathBuf, port: u16, extra: &[&str], node: Option<NodeNames>) -> Cluster {
        // A free port can be taken by another test between the probe and the bind: then
        // kubus exits, and it is started again on another port.
        let mut port = port;
        for attempt in 0..5 {
            let _ = std::fs::remove_file(dir.join("kubeconfig"));
            let log = std::fs::File::create(dir.join("kubus.log")).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubus"));
            // Each cluster's DNS on a port of its own (the default is 53).
            cmd.args(["up", "--cluster", "e2e", "--dns-port", "0"]);
            if node.is_none() {
                cmd.arg("--no-node");
            }
            let child = cmd
                .arg("--data-dir")
                .arg(&dir)
                .arg("--api-port")
                .arg(port.to_string())
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("kubus binary runs");
            let args = extra.iter().map(|s| s.to_string()).collect();
            let mut c =
                Cluster { dir: dir.clone(), port, child: Some(child), keep_dir: false, node: node.clone(), args };
            match c.wait_ready() {
                Ok(()) => return c,
                Err(log) if log.contains("cannot bind the API port") && attempt < 4 => {
                    c.keep_dir = true;
                    c.node = None;
                    drop(c);
                    port = free_port();
                }
                Err(log) => panic!("kubus did not start:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Ready means: this kubus wrote its kubeconfig (it bound its port) and answers /readyz.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("kubus exited ({status}) during start:\n{}", self.log()));
            }
            if self.dir.join("kubeconfig").exists() {
                if let Ok((200, _)) = self.try_http("GET", "/readyz", None, None) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("kubus not ready in 60s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kubus.log")).unwrap_or_default()
    }

    /// The URL of the cluster's embedded NATS.
    pub fn nats_url(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats.url")).expect("kubus wrote nats.url")
    }

    /// A JSON object from kubectl (`kubectl get ... -o json`).
    #[track_caller]
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a).expect_ok()).expect("kubectl printed JSON")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", self.kubeconfig())
            .arg(format!("--cache-dir={}", self.dir.join("kubectl-cache").display()))
            .args(args);
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_cmd(args).stdin(Stdio::null()).output().expect("kubectl runs").into()
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap().into()
    }

    /// Starts a long-running kubectl (e.g. `get -w`) whose stdout goes to a file.
    pub fn kubectl_background(&self, args: &[&str], out: &Path) -> Child {
        let f = std::fs::File::create(out).unwrap();
        self.kubectl_cmd(args).stdin(Stdio::null()).stdout(f).stderr(Stdio::null()).spawn().unwrap()
    }

    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<(u16, String)> {
        self.try_http_accept(method, path, "application/json", content_type, body)
    }

    /// The API server as the admin kubeconfig reaches it (HTTPS, the CA checked, the admin
    /// client certificate).
    pub fn endpoint(&self) -> kubus_bench::kubeconfig::Endpoint {
        self.try_endpoint().expect("the admin kubeconfig")
    }

    fn try_endpoint(&self) -> std::io::Result<kubus_bench::kubeconfig::Endpoint> {
        kubus_bench::kubeconfig::Endpoint::from_kubeconfig(&self.kubeconfig())
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }

    /// A raw request with this Accept header; the status code and the body.
    pub fn try_http_accept(
        &self,
        method: &str,
        path: &str,
        accept: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<(u16, String)> {
        raw_request(&self.try_endpoint()?, method, path, accept, &[], content_type, body)
    }
}

/// A raw HTTP/1.1 request to `endpoint` with these extra headers; the status code and the
/// body (dechunked).
pub fn raw_request(
    endpoint: &kubus_bench::kubeconfig::Endpoint,
    method: &str,
    path: &str,
    accept: &str,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String)> {
    let mut s = endpoint.connect_blocking(Duration::from_secs(30))?;
    let body = body.unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAccept: {accept}\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut resp = Vec::new();
    // A TLS peer that closes without close_notify ends the read with an error after the
    // response; what arrived is kept.
    if let Err(e) = s.read_to_end(&mut resp) {
        if resp.is_empty() {
            return Err(e);
        }
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    Ok((code, body))
}

impl Cluster {
    /// A raw request; returns the status code and the JSON body.
    #[track_caller]
    pub fn http(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, serde_json::Value) {
        let (code, text) = self.try_http(method, path, content_type, body).expect("HTTP request");
        (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// Stops kubus with SIGTERM (a clean shutdown) and keeps the data dir for a restart.
    pub fn stop(&mut self) -> (PathBuf, u16) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
        }
        (self.dir.clone(), self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stops kubus cleanly and starts it again on the same data dir, port and flags (its node
    /// agent too): everything the control plane held only in memory is gone.
    pub fn restart(&mut self) {
        self.stop();
        let (dir, port, node) = (self.dir.clone(), self.port, self.node.take());
        let args = std::mem::take(&mut self.args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut fresh = Cluster::launch(dir, port, &args, node);
        self.child = fresh.child.take();
        self.port = fresh.port;
        self.node = fresh.node.take();
        self.args = std::mem::take(&mut fresh.args);
        // The shell shares this cluster's data dir: dropping it would stop what it just started.
        std::mem::forget(fresh);
    }

    /// Kills kubus outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn keep(&mut self) {
        self.keep_dir = true;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        // A kubus killed outright leaves its nats-server behind: stop that too.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nats-server.pid")) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).status();
        }
        if let Some(names) = self.node.take() {
            reset_node(&self.dir, &names);
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// What `kubus token create` printed: `kubus node --nats URL --token T --ca-cert-hash H`.
pub struct JoinCommand {
    pub url: String,
    pub token: String,
    pub ca_cert_hash: String,
    /// The flags after `kubus node`.
    pub flags: Vec<String>,
}

/// A new bootstrap token of `cluster` and the join command printed with it.
pub fn join_command(cluster: &Cluster) -> JoinCommand {
    let out = Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args(["token", "create", "--cluster", "e2e", "--data-dir"])
        .arg(&cluster.dir)
        .output()
        .expect("kubus token create runs");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    let line = printed.lines().find(|l| l.starts_with("kubus node ")).unwrap_or_else(|| panic!("{printed}"));
    let flags: Vec<String> = line.split_whitespace().skip(2).map(String::from).collect();
    let flag = |name: &str| {
        let i = flags.iter().position(|f| f == name).unwrap_or_else(|| panic!("{name} in {line}"));
        flags[i + 1].clone()
    };
    JoinCommand { url: flag("--nats"), token: flag("--token"), ca_cert_hash: flag("--ca-cert-hash"), flags }
}

/// Polls `f` until it returns Some, for up to `secs` seconds.
#[track_caller]
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within {secs}s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes everything a test's node made on the host, with the product's own `kubus node
/// reset` (containers, shims, mounts, sandboxes, the bridge, cgroups), even after a failure.
pub fn reset_node(dir: &Path, names: &NodeNames) {
    node_reset(Command::new(env!("CARGO_BIN_EXE_kubus")), &dir.join("node"), &names.bridge, &names.cgroup_root);
}

/// `kubus node-reset` for a node's data dir, run by `kubus` (a command that may wrap it, e.g.
/// to enter a host's network namespace); a failure is reported, not fatal (cleanup).
pub fn node_reset(mut kubus: Command, data_dir: &Path, bridge: &str, cgroup_root: &str) {
    let out = kubus
        .args(["node-reset", "--data-dir"])
        .arg(data_dir)
        .args(["--bridge", bridge, "--cgroup-root", cgroup_root])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!("node reset of {} failed: {}", data_dir.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("node reset of {}: {e}", data_dir.display()),
    }
}

/// GET from the machine itself with busybox wget (3 s at most); the trimmed body, None on failure.
pub fn host_get(url: &str) -> Option<String> {
    let o = Command::new("timeout").args(["3", "busybox", "wget", "-qO-", url]).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// A standalone node agent (`kubus node`) joined to `cluster` through its NATS.
pub struct NodeAgent {
    child: Option<Child>,
    pub dir: PathBuf,
    pub names: NodeNames,
    nats: String,
    /// More `kubus node` flags.
    extra: Vec<String>,
}

impl NodeAgent {
    pub fn start(cluster: &Cluster, names: NodeNames) -> NodeAgent {
        NodeAgent::start_with(cluster, names, &[])
    }

    /// An agent with more `kubus node` flags (e.g. `--metrics-bind-address`).
    pub fn start_with(cluster: &Cluster, names: NodeNames, extra: &[&str]) -> NodeAgent {
        let dir = cluster.dir.join("agent");
        std::fs::create_dir_all(&dir).unwrap();
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // The node's own identity, as an administrator makes one for a machine that joins.
        if !extra.iter().any(|f| f == "--kubeconfig") && cluster.dir.join("pki").join("ca.key").exists() {
            let kubeconfig = node_kubeconfig(cluster, &names.node_name, &dir);
            extra.extend(["--kubeconfig".to_string(), kubeconfig.display().to_string()]);
        }
        let mut a = NodeAgent { child: None, dir, names, nats: cluster.nats_url(), extra };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kubus"))
            .args(["node", "--cluster", "e2e", "--nats", &self.nats, "--data-dir"])
            .arg(self.dir.join("node"))
            .args(self.names.flags(&self.dir))
            .args(["--pod-cidr", &self.names.pod_cidr, "--service-cidr", &self.names.service_cidr])
            // A pod range of this test's own: agents of tests running at once share the host,
            // which refuses overlapping ranges (the cluster's published default is the same
            // for every test cluster).
            .args(["--node-cluster-cidr", &self.names.cluster_cidr])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kubus node runs");
        self.child = Some(child);
    }

    /// Kills the agent outright (SIGKILL), as a crash would; its containers keep running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Waits until the agent's Node is Ready; fails with the end of the agent's log.
    #[track_caller]
    pub fn wait_ready(&self, cluster: &Cluster, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while cluster.node_ready_status(&self.names.node_name) != "True" {
            if Instant::now() >= deadline {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!("node {} not Ready within {secs}s; agent log:\n{}", self.names.node_name, tail.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A kubeconfig for node `node` of `cluster` (`kubus kubeconfig user`), written in `dir`.
pub fn node_kubeconfig(cluster: &Cluster, node: &str, dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args(["kubeconfig", "user", "--cluster", "e2e", "--org", "system:nodes", "--client-name"])
        .arg(format!("system:node:{node}"))
        .arg("--data-dir")
        .arg(&cluster.dir)
        .output()
        .expect("kubus kubeconfig runs");
    assert!(out.status.success(), "kubus kubeconfig user: {}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join(format!("{node}.kubeconfig"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.kill();
        reset_node(&self.dir, &self.names);
    }
}

// ---- pods on a real node ----

impl Cluster {
    /// `kubectl apply -f -` of a YAML document.
    #[track_caller]
    pub fn apply(&self, yaml: &str) {
        self.kubectl_stdin(&["apply", "-f", "-"], yaml).expect_ok();
    }

    /// The pod as JSON, or Null when it cannot be read.
    pub fn pod(&self, name: &str) -> serde_json::Value {
        let r = self.kubectl(&["get", "pod", name, "-o", "json"]);
        serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Polls the pod until `f` accepts it; fails with the pod's last JSON and events.
    #[track_caller]
    pub fn wait_pod(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.pod(name);
            if f(&p) {
                return p;
            }
            if Instant::now() > deadline {
                let events =
                    self.kubectl(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")]);
                panic!("pod {name}: {what} not within {secs}s\n{p:#}\nevents:\n{}", events.stdout);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls until the pod's Ready condition is True.
    #[track_caller]
    pub fn wait_pod_ready(&self, name: &str, secs: u64) -> serde_json::Value {
        self.wait_pod(name, secs, "Ready", |p| condition(p, "Ready") == "True")
    }

    /// The (reason, message) of the events about an object, oldest first.
    pub fn events_of(&self, name: &str) -> Vec<(String, String)> {
        let list = self.get_json(&["events", "--field-selector", &format!("involvedObject.name={name}")]);
        let mut items = list["items"].as_array().cloned().unwrap_or_default();
        items.sort_by(|a, b| {
            let t = |e: &serde_json::Value| {
                e["lastTimestamp"].as_str().or(e["eventTime"].as_str()).unwrap_or("").to_string()
            };
            t(a).cmp(&t(b))
        });
        items
            .iter()
            .map(|e| (e["reason"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
            .collect()
    }
}

/// A container's status by name (containers and init containers), or Null.
pub fn container_status(p: &serde_json::Value, name: &str) -> serde_json::Value {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .flat_map(|k| p["status"][*k].as_array().cloned().unwrap_or_default())
        .find(|s| s["name"] == name)
        .unwrap_or(serde_json::Value::Null)
}

/// The status ("True"/"False") of a pod condition, or "" when absent.
pub fn condition(p: &serde_json::Value, kind: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The STATUS column `kubectl get pod NAME` prints.
pub fn status_column(c: &Cluster, name: &str) -> String {
    let out = c.kubectl(&["get", "pod", name, "--no-headers"]).stdout;
    out.split_whitespace().nth(2).unwrap_or("").to_string()
}
