//! `kubus bench api`: throughput and latency of the API server over HTTP, as kubectl and
//! controllers use it. Starts its own cluster (embedded nats-server in a temp dir) unless
//! `--server` names one. Figures are recorded in docs/benchmarks.md.

use anyhow::{bail, Context as _};
use kubus_apiserver::{ApiServer, ApiServerConfig};
use kubus_bus::{EmbeddedNats, Store, StoreConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchWhat {
    /// The scheduler and controllers at scale: `kubus up --sim-nodes N` as a child process,
    /// then M pods created through the API; nodes-Ready time, scheduling throughput,
    /// time to Running, RSS.
    Cluster {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 2000)]
        pods: usize,
        /// Pods carry required anti-affinity on kubernetes.io/hostname within groups of
        /// `nodes` pods (so every group fits exactly once per node).
        #[arg(long)]
        anti_affinity: bool,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// The node agent with real containers (root): pod startup latency, the runtime path beside
    /// runc, RSS of the agent and its shims (`kubus up --no-node` + `kubus node` as children).
    Node(crate::cmd::bench_node::NodeBenchArgs),
    /// kube-proxy on the real datapath (root): endpoint change -> rule live with 1,000 Services
    /// x 10 endpoints, and connection latency through a ClusterIP against the pod IP.
    Proxy(crate::cmd::bench_proxy::ProxyBenchArgs),
    /// create/get/update/list/watch against the API server.
    Api {
        /// Objects to create (and then get and update).
        #[arg(long, default_value_t = 2000)]
        objects: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Watchers for the watch delivery measurement.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// An existing API server (http://host:port); default: start one.
        #[arg(long)]
        server: Option<String>,
    },
}

/// A minimal HTTP/1.1 keep-alive client: enough for JSON requests and chunked watch streams
/// (shared by every bench).
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    pub(crate) async fn open(addr: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        Ok(Conn { reader: BufReader::new(s), host: addr.to_string() })
    }

    pub(crate) async fn send_head(&mut self, method: &str, path: &str, ct: &str, body: &[u8]) -> anyhow::Result<()> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        Ok(())
    }

    pub(crate) async fn read_head(&mut self) -> anyhow::Result<(u16, Option<usize>, bool)> {
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("bad status line")?;
        let (mut len, mut chunked) = (None, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().ok();
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        Ok((code, len, chunked))
    }

    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        ct: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.send_head(method, path, ct, body).await?;
        let (code, len, chunked) = self.read_head().await?;
        let mut buf = Vec::new();
        if chunked {
            while let Some(chunk) = self.next_chunk().await? {
                buf.extend_from_slice(&chunk);
            }
        } else {
            buf.resize(len.unwrap_or(0), 0);
            self.reader.read_exact(&mut buf).await?;
        }
        Ok((code, buf))
    }

    pub(crate) async fn next_chunk(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let n = usize::from_str_radix(line.trim(), 16).context("bad chunk size")?;
        let mut buf = vec![0; n + 2];
        self.reader.read_exact(&mut buf).await?;
        buf.truncate(n);
        Ok(if n == 0 { None } else { Some(buf) })
    }
}

/// Nearest-rank percentile, in milliseconds, of sorted samples (NaN without samples).
pub(crate) fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    println!(
        "{name:<28} {:>7} ops  {:>9.0} ops/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}

/// Runs `total` operations over `conc` connections; `op(conn, i)` does operation `i`.
async fn phase<F, Fut>(addr: &str, total: usize, conc: usize, op: F) -> anyhow::Result<(Vec<Duration>, Duration)>
where
    F: Fn(Conn, usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = anyhow::Result<Conn>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (next, op, addr) = (next.clone(), op.clone(), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut conn = Conn::open(&addr).await?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                conn = op(conn, i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, started.elapsed()))
}

fn cm(i: usize, v: usize) -> Vec<u8> {
    serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":format!("bench-{i}"),"labels":{"bench":"yes"}},
        "data":{"value": v.to_string(), "payload": "x".repeat(512)}})
    .to_string()
    .into_bytes()
}

async fn expect(
    conn: &mut Conn,
    method: &str,
    path: &str,
    ct: &str,
    body: &[u8],
    want: u16,
) -> anyhow::Result<Vec<u8>> {
    let (code, body) = conn.request(method, path, ct, body).await?;
    if code != want {
        bail!("{method} {path}: {code} {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (objects, concurrency, watchers, server) = match args.what {
        BenchWhat::Api { objects, concurrency, watchers, server } => (objects, concurrency, watchers, server),
        BenchWhat::Cluster { nodes, pods, anti_affinity, concurrency } => {
            let r = cluster(nodes, pods, anti_affinity, concurrency).await;
            actix::System::current().stop();
            return r;
        }
        BenchWhat::Node(node) => {
            let r = crate::cmd::bench_node::run(node).await;
            actix::System::current().stop();
            return r;
        }
        BenchWhat::Proxy(proxy) => {
            let r = crate::cmd::bench_proxy::run(proxy).await;
            actix::System::current().stop();
            return r;
        }
    };
    let mut _own = None;
    let addr = match server {
        Some(s) => s.trim_start_matches("http://").trim_end_matches('/').to_string(),
        None => {
            let dir = std::env::temp_dir().join(format!("kubus-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let nats = EmbeddedNats::start(&dir, "127.0.0.1:0").await?;
            let client = kubus_bus::connect(nats.url(), "bench").await?;
            let store =
                Store::open(client.clone(), StoreConfig { cluster: "bench".into(), ..Default::default() }).await?;
            let api = ApiServer::start(
                store,
                client,
                ApiServerConfig {
                    bind: "127.0.0.1:0".parse()?,
                    cluster: "bench".into(),
                    watch_cache_events: 100_000,
                    http_workers: 2,
                    tombstone_retention: std::time::Duration::from_secs(3600),
                    service_ranges: Default::default(),
                },
            )
            .await?;
            let addr = api.addr.to_string();
            _own = Some((dir, nats, api));
            addr
        }
    };
    let ns = "/api/v1/namespaces/default/configmaps";
    println!("kubus bench api: {objects} ConfigMaps (~0.6 KiB), {concurrency} concurrent clients, {watchers} watchers, server {addr}");

    // Watchers: each holds a watch on configmaps; delivery latency is measured on updates.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut watch_tasks = Vec::new();
    for _ in 0..watchers {
        let (addr, tx) = (addr.clone(), tx.clone());
        watch_tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await?;
            c.send_head(
                "GET",
                "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&labelSelector=bench%3Dwatch",
                "application/json",
                b"",
            )
            .await?;
            c.read_head().await?;
            let mut pending = Vec::new();
            while let Some(chunk) = c.next_chunk().await? {
                pending.extend_from_slice(&chunk);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
                    if let Some(i) = v["object"]["data"]["seq"].as_str().and_then(|s| s.parse().ok()) {
                        let _ = tx.send((i, Instant::now()));
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }

    let (lat, wall) = phase(&addr, objects, concurrency, move |mut c, i| async move {
        expect(&mut c, "POST", ns, "application/json", &cm(i, 0), 201).await?;
        Ok(c)
    })
    .await?;
    report("create", lat, wall);
    let (lat, wall) = phase(&addr, objects, concurrency, move |mut c, i| async move {
        expect(&mut c, "GET", &format!("{ns}/bench-{i}"), "application/json", b"", 200).await?;
        Ok(c)
    })
    .await?;
    report("get", lat, wall);
    let (lat, wall) = phase(&addr, objects, concurrency, move |mut c, i| async move {
        let patch = format!(r#"{{"data":{{"value":"{i}"}}}}"#);
        expect(&mut c, "PATCH", &format!("{ns}/bench-{i}"), "application/merge-patch+json", patch.as_bytes(), 200)
            .await?;
        Ok(c)
    })
    .await?;
    report("update (merge patch)", lat, wall);
    let lists = 50.max(objects / 100);
    let (lat, wall) = phase(&addr, lists, concurrency.min(4), move |mut c, _| async move {
        expect(&mut c, "GET", &format!("{ns}?limit=500"), "application/json", b"", 200).await?;
        Ok(c)
    })
    .await?;
    report("list (500 per page)", lat, wall);

    // Watch delivery: one labelled object updated repeatedly; every watcher must see each update.
    let mut c = Conn::open(&addr).await?;
    let body = serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"watched","labels":{"bench":"watch"}},"data":{"seq":"0"}}).to_string();
    expect(&mut c, "POST", ns, "application/json", body.as_bytes(), 201).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    let rounds = 200;
    let mut lat = Vec::new();
    let started = Instant::now();
    for seq in 1..=rounds {
        let patch = format!(r#"{{"data":{{"seq":"{seq}"}}}}"#);
        let sent = Instant::now();
        expect(&mut c, "PATCH", &format!("{ns}/watched"), "application/merge-patch+json", patch.as_bytes(), 200)
            .await?;
        let mut got = 0;
        while got < watchers {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some((i, at))) if i == seq => {
                    lat.push(at.duration_since(sent));
                    got += 1;
                }
                Ok(Some(_)) => {}
                _ => bail!("watchers missed update {seq} ({got}/{watchers} delivered)"),
            }
        }
    }
    report(&format!("watch delivery x{watchers}"), lat, started.elapsed());
    for t in watch_tasks {
        t.abort();
    }
    if let Some((dir, nats, api)) = _own {
        api.stop().await;
        nats.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    actix::System::current().stop();
    Ok(())
}

/// Reads one counter (summed over the label sets matching `filter`) from a /metrics page.
fn metric(page: &str, name: &str, filter: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// VmRSS of a process, in KiB.
pub(crate) fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
}

fn rss_mib(pid: u32) -> f64 {
    vm_rss_kib(pid).map_or(0.0, |kb| kb as f64 / 1024.0)
}

/// A random token naming what a bench creates on the host (bridges, tables, dirs).
pub(crate) fn token() -> anyhow::Result<String> {
    let mut b = [0u8; 3];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Stops a child `kubus` with SIGTERM (it cleans up), SIGKILL after 10 s.
pub(crate) fn stop(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    for _ in 0..100 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

struct Child(std::process::Child, std::path::PathBuf);

impl Drop for Child {
    fn drop(&mut self) {
        stop(&mut self.0);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

async fn cluster(nodes: usize, pods: usize, anti_affinity: bool, concurrency: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("kubus-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "up",
            "--no-node",
            "--dns-port",
            "0",
            "--nats-listen",
            "127.0.0.1:0",
            "--cluster",
            "bench",
            "--sim-nodes",
            &nodes.to_string(),
        ])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--api-port")
        .arg(port.to_string())
        .env("KUBUS_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("kubus.log"))?)
        .spawn()?;
    let pid = child.id();
    let _child = Child(child, dir.clone());
    let addr = format!("127.0.0.1:{port}");
    println!(
        "kubus bench cluster: {nodes} simulated nodes, {pods} pods{}, server {addr} (pid {pid})",
        if anti_affinity { " with required anti-affinity" } else { "" }
    );
    loop {
        if dir.join("kubeconfig").exists() && Conn::open(&addr).await.is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("kubus did not start; see {}", dir.join("kubus.log").display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nodes Ready.
    let ready_at = loop {
        let body = get(&addr, "/api/v1/nodes").await?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let ready = v["items"]
            .as_array()
            .map(|items| items.iter().filter(|n| kubus_apimachinery::conditions::is_true(n, "Ready")).count())
            .unwrap_or(0);
        if ready >= nodes {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {ready}/{nodes} nodes Ready after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("{:<40} {:>8.2} s", format!("{nodes} nodes Ready (from process start)"), ready_at.as_secs_f64());
    let rss_nodes = rss_mib(pid);

    // Pods, created as fast as `concurrency` clients can.
    let page = get(&addr, "/metrics").await?;
    let page = String::from_utf8_lossy(&page).into_owned();
    let scheduled0 = metric(&page, "kubus_scheduler_schedule_attempts_total", "result=\"scheduled\"");
    let running0 = metric(&page, "kubus_sim_node_writes_total", "kind=\"pod-status\",result=\"ok\"");
    let t0 = Instant::now();
    let group = nodes.max(1);
    let (lat, create_wall) = phase(&addr, pods, concurrency, move |mut c, i| async move {
        let mut pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("bench-{i}"), "labels": {"app": "bench", "group": format!("g{}", i / group)}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}});
        if anti_affinity {
            pod["spec"]["affinity"] = serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"group": format!("g{}", i / group)}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        expect(&mut c, "POST", "/api/v1/namespaces/default/pods", "application/json", pod.to_string().as_bytes(), 201).await?;
        Ok(c)
    })
    .await?;
    report("pod create", lat, create_wall);
    let mut scheduled_at = None;
    let running_at = loop {
        let page = get(&addr, "/metrics").await?;
        let page = String::from_utf8_lossy(&page).into_owned();
        let scheduled = metric(&page, "kubus_scheduler_schedule_attempts_total", "result=\"scheduled\"") - scheduled0;
        let running = metric(&page, "kubus_sim_node_writes_total", "kind=\"pod-status\",result=\"ok\"") - running0;
        if scheduled_at.is_none() && scheduled >= pods as f64 {
            scheduled_at = Some(t0.elapsed());
        }
        if running >= pods as f64 {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(900) {
            bail!("{scheduled}/{pods} scheduled, {running}/{pods} running after 900 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let scheduled_at = scheduled_at.unwrap_or(running_at);
    println!(
        "{:<40} {:>8.2} s  ({:.0} pods/s from the first create)",
        format!("{pods} pods scheduled"),
        scheduled_at.as_secs_f64(),
        pods as f64 / scheduled_at.as_secs_f64()
    );
    println!("{:<40} {:>8.2} s", format!("{pods} pods Running"), running_at.as_secs_f64());
    let page = get(&addr, "/metrics").await?;
    let page = String::from_utf8_lossy(&page).into_owned();
    let algo_sum = metric(&page, "kubus_scheduler_scheduling_algorithm_duration_seconds_sum", "");
    let algo_count = metric(&page, "kubus_scheduler_scheduling_algorithm_duration_seconds_count", "");
    if algo_count > 0.0 {
        println!(
            "{:<40} {:>8.3} ms ({:.0} pods/s of pure scheduling work)",
            "filter+score per pod (mean)",
            algo_sum / algo_count * 1e3,
            algo_count / algo_sum
        );
    }
    println!(
        "{:<40} {:>8.0} MiB after nodes, {:.0} MiB after pods",
        "control plane + sim nodes RSS",
        rss_nodes,
        rss_mib(pid)
    );
    Ok(())
}

/// One GET on a fresh connection (the phases between polls outlast HTTP keep-alive).
async fn get(addr: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut c = Conn::open(addr).await?;
    let (code, body) = c.request("GET", path, "application/json", b"").await?;
    if code != 200 {
        bail!("GET {path}: {code}");
    }
    Ok(body)
}
