//! `kubus bench proxy` (root): kube-proxy on the real datapath. An embedded nats-server, the
//! store, informers and the `KubeProxy` actor as a node agent runs them (1 s minimum sync
//! period), N Services x M endpoints in the store, and two network-namespace "pods" running
//! busybox httpd on a bridge of the bench's own. Measures
//! - endpoint change -> rule live: from the EndpointSlice write returning to the first new TCP
//!   connection to the ClusterIP answered by the new endpoint, with every sync's duration;
//! - connection latency through the ClusterIP against the pod IP, interleaved.
//!
//! Everything it creates is named after a random token and removed on exit, also on error.

use crate::cmd::bench::pct;
use actix::Actor as _;
use anyhow::Context as _;
use kubus_bus::{EmbeddedNats, Key, Store, StoreConfig};
use kubus_proxy::{KubeProxy, ProxierConfig, RulesConfig, Shutdown};
use kubus_runtime::Informer;
use serde_json::{json, Value};
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args, Debug)]
pub struct ProxyBenchArgs {
    /// Services in the table (one of them is the measured one).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Endpoints of every other Service (addresses nobody answers on; they only fill the table).
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// Endpoint changes of the measured Service, 1.5 s apart (as a rollout's steps are).
    #[arg(long, default_value_t = 20)]
    pub changes: usize,
    /// Connections of each kind (ClusterIP, pod IP) for the latency comparison.
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
}

fn token() -> anyhow::Result<String> {
    let mut b = [0u8; 3];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn sh(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out =
        Command::new(program).args(args).stdin(Stdio::null()).output().with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Undoes the bench's host changes in reverse order, whatever happened.
#[derive(Default)]
struct Undo(Vec<Vec<String>>);

impl Undo {
    fn push(&mut self, cmd: &[&str]) {
        self.0.push(cmd.iter().map(|s| s.to_string()).collect());
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for cmd in self.0.iter().rev() {
            let _ = Command::new(&cmd[0]).args(&cmd[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the httpd "pods" on exit.
struct Servers(Vec<std::process::Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A /22 for ClusterIPs and a /24 for the pods in 198.18.0.0/15 (benchmarking space) that
/// nothing on this host routes.
fn free_ranges(tok: &str) -> anyhow::Result<(u8, u8)> {
    let routes = String::from_utf8_lossy(&Command::new("ip").args(["-4", "route"]).output()?.stdout).into_owned();
    let seed = u32::from_str_radix(tok, 16)?;
    for i in 0..64u32 {
        let svc = (((seed + i) % 64) * 4) as u8;
        let pods = ((seed >> 8) + i) as u8;
        let taken = (svc..svc + 4).any(|b| routes.contains(&format!("198.18.{b}.")))
            || routes.contains(&format!("198.19.{pods}."));
        if !taken {
            return Ok((svc, pods));
        }
    }
    anyhow::bail!("no free range in 198.18.0.0/15")
}

async fn put(store: &Store, group: &str, resource: &str, obj: &Value) -> anyhow::Result<()> {
    let (ns, name) =
        (obj["metadata"]["namespace"].as_str().unwrap_or(""), obj["metadata"]["name"].as_str().unwrap_or(""));
    let key = Key::new(group, resource, Some(ns), name);
    let bytes = bytes::Bytes::from(serde_json::to_vec(obj)?);
    match store.get(&key).await? {
        Some(cur) => store.update(&key, bytes, cur.revision).await?,
        None => store.create(&key, bytes).await?,
    };
    Ok(())
}

fn service(i: usize, ip: Ipv4Addr) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": format!("svc-{i}")},
        "spec": {"clusterIP": ip.to_string(), "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}})
}

fn slice(i: usize, ips: &[Ipv4Addr]) -> Value {
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": format!("svc-{i}"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "endpoints": endpoints})
}

/// One HTTP GET on a new connection; the body, and the connect and total times.
async fn get(addr: SocketAddr) -> anyhow::Result<(String, Duration, Duration)> {
    let started = Instant::now();
    // Long enough for a SYN retransmission (1 s) to show as latency rather than an error.
    let mut s = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await??;
    let connected = started.elapsed();
    s.set_nodelay(true)?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n").await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string()).unwrap_or_default();
    Ok((body, connected, started.elapsed()))
}

/// Sum and count of kube-proxy's sync histogram.
fn sync_seconds() -> (f64, u64) {
    prometheus::gather()
        .iter()
        .find(|f| f.name() == "kubus_proxy_sync_seconds")
        .and_then(|f| {
            f.get_metric().first().map(|m| (m.get_histogram().get_sample_sum(), m.get_histogram().get_sample_count()))
        })
        .unwrap_or((0.0, 0))
}

fn line(name: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "{name:<52} {:>5}  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
        samples.len(),
        pct(samples, 0.5),
        pct(samples, 0.99),
        samples.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    );
}

pub async fn run(args: ProxyBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(crate::cmd::up::is_root(), "kubus bench proxy needs root (network namespaces, nftables)");
    anyhow::ensure!(args.services >= 1 && args.services <= 1000, "--services must be 1..=1000 (one /22 of ClusterIPs)");
    let tok = token()?;
    let (svc_net, pod_net) = free_ranges(&tok)?;
    let mut undo = Undo::default();
    let bridge = format!("kbp{tok}");
    let gw = format!("198.19.{pod_net}.1");
    sh("ip", &["link", "add", &bridge, "type", "bridge"])?;
    undo.push(&["ip", "link", "del", &bridge]);
    sh("ip", &["addr", "add", &format!("{gw}/24"), "dev", &bridge])?;
    sh("ip", &["link", "set", &bridge, "up"])?;
    let dir = TempDir(std::env::temp_dir().join(format!("kubus-bench-proxy-{tok}")));
    std::fs::create_dir_all(&dir.0)?;
    let mut servers = Servers(vec![]);
    let mut pods = vec![];
    for (i, name) in ["a", "b"].iter().enumerate() {
        let ns = format!("kbp{tok}-{name}");
        let ip: Ipv4Addr = format!("198.19.{pod_net}.{}", 10 + i).parse()?;
        let host_if = format!("kbp{tok}{name}");
        sh("ip", &["netns", "add", &ns])?;
        undo.push(&["ip", "netns", "del", &ns]);
        sh("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        sh("ip", &["link", "set", &host_if, "master", &bridge, "up"])?;
        sh("ip", &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        sh("ip", &["-n", &ns, "route", "add", "default", "via", &gw])?;
        let root = dir.0.join(name);
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("index.html"), format!("pod-{name}\n"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "80", "-h"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting busybox httpd")?;
        servers.0.push(child);
        pods.push((format!("pod-{name}"), ip));
    }
    let table = format!("kubus-bench-{tok}");
    undo.push(&["nft", "delete", "table", "ip", &table]);

    let nats = EmbeddedNats::start(&dir.0.join("nats"), "127.0.0.1:0").await.context("starting nats-server")?;
    let result = measure(&args, &nats, &table, &bridge, svc_net, &pods).await;
    nats.stop().await;
    drop(servers);
    drop(undo);
    result
}

async fn measure(
    args: &ProxyBenchArgs,
    nats: &EmbeddedNats,
    table: &str,
    bridge: &str,
    svc_net: u8,
    pods: &[(String, Ipv4Addr)],
) -> anyhow::Result<()> {
    let client = kubus_bus::connect(nats.url(), "kubus-bench-proxy").await?;
    let store = Store::open(client, StoreConfig::default()).await?;
    let cluster_ip = |i: usize| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, svc_net, 0)) + 1 + i as u32);
    let fake =
        |i: usize, j: usize| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + (i * args.endpoints + j) as u32);
    let started = Instant::now();
    for i in 0..args.services {
        put(&store, "", "services", &service(i, cluster_ip(i))).await?;
        let ips: Vec<Ipv4Addr> =
            if i == 0 { vec![pods[0].1] } else { (0..args.endpoints).map(|j| fake(i, j)).collect() };
        put(&store, "discovery.k8s.io", "endpointslices", &slice(i, &ips)).await?;
    }
    println!(
        "{} Services ({} endpoints each, the measured one 1) written in {:.1} s",
        args.services,
        args.endpoints,
        started.elapsed().as_secs_f64()
    );
    let services = Informer::start(store.clone(), "", "services", None);
    let slices = Informer::start(store.clone(), "discovery.k8s.io", "endpointslices", None);
    let config = ProxierConfig {
        rules: RulesConfig {
            table: table.to_string(),
            cluster_cidr: None,
            localhost_nodeports: false,
            node_name: None,
        },
        service_cidr: Some(format!("198.18.{svc_net}.0/22")),
        route_dev: bridge.to_string(),
        ..Default::default()
    };
    let min_sync = config.min_sync_period;
    let proxy = KubeProxy::new(config, services, slices).start();
    let vip = SocketAddr::from((cluster_ip(0), 80));
    let started = Instant::now();
    loop {
        if let Ok((body, ..)) = get(vip).await {
            if body == pods[0].0 {
                break;
            }
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "the ClusterIP never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first_sum, first_count) = sync_seconds();
    println!(
        "start -> ClusterIP answers: {:.2} s (informers' initial list and the first, full sync: {:.0} ms in {} sync(s))",
        started.elapsed().as_secs_f64(),
        first_sum * 1e3,
        first_count
    );

    let mut live = Vec::new();
    let mut syncs = Vec::new();
    for n in 0..args.changes {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (name, ip) = &pods[(n + 1) % 2];
        let (sum0, count0) = sync_seconds();
        put(&store, "discovery.k8s.io", "endpointslices", &slice(0, &[*ip])).await?;
        let written = Instant::now();
        loop {
            if let Ok((body, ..)) = get(vip).await {
                if &body == name {
                    break;
                }
            }
            anyhow::ensure!(written.elapsed() < Duration::from_secs(10), "change {n} never went live");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        live.push(written.elapsed());
        // Let the sync that made it live finish counting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (sum1, count1) = sync_seconds();
        if count1 > count0 {
            syncs.push(Duration::from_secs_f64((sum1 - sum0) / (count1 - count0) as f64));
        }
    }

    // Latency: the measured service's endpoint is pods[changes % 2] now.
    let (_, pod_ip) = &pods[args.changes % 2];
    let direct = SocketAddr::from((*pod_ip, 80));
    let (mut c_vip, mut c_pod, mut g_vip, mut g_pod) = (vec![], vec![], vec![], vec![]);
    let (mut failed_vip, mut failed_pod) = (0, 0);
    for _ in 0..args.connections {
        match get(vip).await {
            Ok((_, connect, total)) => {
                c_vip.push(connect);
                g_vip.push(total);
            }
            Err(_) => failed_vip += 1,
        }
        match get(direct).await {
            Ok((_, connect, total)) => {
                c_pod.push(connect);
                g_pod.push(total);
            }
            Err(_) => failed_pod += 1,
        }
    }
    proxy.send(Shutdown).await.ok();

    println!(
        "\nkube-proxy, {} Services ({} endpoints in the table), min sync period {:?}:",
        args.services,
        (args.services - 1) * args.endpoints + 1,
        min_sync
    );
    line("endpoint change -> new endpoint answers (live)", &mut live);
    line("  of which the sync (ruleset + nft, incremental)", &mut syncs);
    line("connect through the ClusterIP", &mut c_vip);
    line("connect to the pod IP", &mut c_pod);
    line("connect + GET + response through the ClusterIP", &mut g_vip);
    line("connect + GET + response to the pod IP", &mut g_pod);
    println!("failed connections: {failed_vip} through the ClusterIP, {failed_pod} to the pod IP");
    println!(
        "ClusterIP / pod IP, medians: connect {:.2}x, request {:.2}x",
        pct(&c_vip, 0.5) / pct(&c_pod, 0.5),
        pct(&g_vip, 0.5) / pct(&g_pod, 0.5)
    );
    Ok(())
}
