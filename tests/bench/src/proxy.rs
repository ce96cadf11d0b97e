//! `kubus bench proxy` (root): kube-proxy on the real datapath. An embedded nats-server, the
//! store, informers and the `KubeProxy` actor as a node agent runs them (1 s minimum sync
//! period), N Services x M endpoints in the store, and two network-namespace "pods" running
//! busybox httpd on a bridge of the bench's own. Measures
//! - endpoint change -> rule live: from the EndpointSlice write returning to the first new TCP
//!   connection to the ClusterIP answered by the new endpoint, with every sync's duration;
//! - connection latency through the ClusterIP against the pod IP, interleaved;
//! - the same table synced by a `Proxier` alone, split into ruleset computation and `nft -f`,
//!   so the actor's figures can be read as coalescing + min sync period + compute + nft;
//! - for each of those endpoint changes, the computation a sync does now (the changed
//!   Service's rules only) beside a full recomputation of every Service's rules (what every
//!   sync did before per-Service change tracking, and what a resync still does).
//!
//! Everything it creates is named after a random token and removed on exit, also on error.

use actix::Actor as _;
use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubus_apimachinery::{Object, ObjectExt};
use kubus_bus::{EmbeddedNats, Key, Store, StoreConfig};
use kubus_controller_runtime::Informer;
use kubus_proxy::{
    KubeProxy, Proxier, ProxierConfig, ProxyRules, RulesConfig, ServiceChanges, ServiceList, Shutdown, SliceList,
    SERVICE_NAME_LABEL,
};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::host::{is_root, token};
use crate::stats::pct;

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

/// Creates or replaces an object in the store, as the API server would have written it.
async fn put<K: Object>(store: &Store, obj: &K) -> anyhow::Result<()> {
    let key = Key::new(K::GROUP, K::URL_PATH_SEGMENT, Some(obj.namespace()), obj.name());
    let bytes = bytes::Bytes::from(serde_json::to_vec(obj)?);
    match store.get(&key).await? {
        Some(cur) => store.update(&key, bytes, cur.revision).await?,
        None => store.create(&key, bytes).await?,
    };
    Ok(())
}

fn service(i: usize, ip: Ipv4Addr) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(format!("svc-{i}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.to_string()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(80)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(i: usize, ips: &[Ipv4Addr]) -> EndpointSlice {
    let endpoint = |ip: &Ipv4Addr| Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions { ready: Some(true), serving: Some(true), terminating: Some(false) }),
        ..Default::default()
    };
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(format!("svc-{i}")),
            labels: Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), format!("svc-{i}"))])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(80),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: ips.iter().map(endpoint).collect(),
    }
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
        .find(|f| f.name() == "kubeproxy_sync_proxy_rules_duration_seconds")
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
    anyhow::ensure!(is_root(), "kubus bench proxy needs root (network namespaces, nftables)");
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

    let nats = EmbeddedNats::start(&dir.0.join("nats"), "127.0.0.1:0", None).await.context("starting nats-server")?;
    let result = measure(&args, &nats, &table, &bridge, svc_net, &pods).await;
    nats.stop().await;
    drop(servers);
    drop(undo);
    result
}

/// What the measured Service resolves to: its ClusterIP, and the two pods' bodies and addresses.
struct Target<'a> {
    vip: SocketAddr,
    pods: &'a [(String, Ipv4Addr)],
}

/// The polling connections made while a change went live: a switch must not fail or stall
/// (a lost SYN costs a 1 s retransmission) the connections opened meanwhile.
#[derive(Default)]
struct Polls {
    made: usize,
    failed: usize,
    slow: usize,
}

impl Polls {
    fn summary(&self) -> String {
        format!("{} connections, {} failed, {} slower than 500 ms", self.made, self.failed, self.slow)
    }
}

/// Polls new connections to the ClusterIP every `every` until `want` answers; the time from `since`.
async fn until_answers(
    vip: SocketAddr,
    want: &str,
    since: Instant,
    every: Duration,
    polls: &mut Polls,
) -> anyhow::Result<Duration> {
    loop {
        let attempt = Instant::now();
        let got = get(vip).await;
        polls.made += 1;
        polls.slow += usize::from(attempt.elapsed() > Duration::from_millis(500));
        match got {
            Ok((body, ..)) if body == want => return Ok(since.elapsed()),
            Ok(_) => {}
            Err(_) => polls.failed += 1,
        }
        anyhow::ensure!(since.elapsed() < Duration::from_secs(10), "{want} never answered on {vip}");
        tokio::time::sleep(every).await;
    }
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
    // Kept for the Proxier-alone phase, which syncs the same objects without the store.
    let (mut svc_objs, mut slice_objs) = (vec![], vec![]);
    for i in 0..args.services {
        let svc = service(i, cluster_ip(i));
        put(&store, &svc).await?;
        let ips: Vec<Ipv4Addr> =
            if i == 0 { vec![pods[0].1] } else { (0..args.endpoints).map(|j| fake(i, j)).collect() };
        let sl = slice(i, &ips);
        put(&store, &sl).await?;
        svc_objs.push(svc);
        slice_objs.push(sl);
    }
    println!(
        "{} Services ({} endpoints each, the measured one 1) written in {:.1} s",
        args.services,
        args.endpoints,
        started.elapsed().as_secs_f64()
    );
    let services = Informer::<Service>::start(store.clone());
    let slices = Informer::<EndpointSlice>::start(store.clone());
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
    let target = Target { vip: SocketAddr::from((cluster_ip(0), 80)), pods };
    let proxy = KubeProxy::new(config.clone(), services, slices).start();
    let shipped = through_actor(args, &store, &target).await;
    // Stopped on every path, and its table gone, before anything else syncs that table.
    proxy.send(Shutdown).await.ok();
    wait_table_gone(table).await;
    let mut shipped = shipped?;
    let mut alone = proxier_alone(args, config, svc_objs, slice_objs, &target).await?;

    println!(
        "\nkube-proxy, {} Services ({} endpoints in the table), min sync period {:?}:",
        args.services,
        (args.services - 1) * args.endpoints + 1,
        min_sync
    );
    println!("through the store, informers and the KubeProxy actor:");
    println!(
        "{:<52} {:>8.1} ms",
        "  first sync (full table, kubeproxy_sync_proxy_rules_duration_seconds)", shipped.first_sync_ms
    );
    line("  endpoint change -> new endpoint answers (live)", &mut shipped.live);
    line("    of which the sync (ruleset + nft, incremental)", &mut shipped.syncs);
    println!("  polling meanwhile (every 5 ms): {}", shipped.polls.summary());
    println!("the Proxier alone on the same objects (no store, no coalescing, no min sync period):");
    println!(
        "{:<52} {:>8.1} ms compute + {:.1} ms nft",
        "  full sync",
        alone.full_compute.as_secs_f64() * 1e3,
        alone.full_apply.as_secs_f64() * 1e3
    );
    line("  incremental sync: ruleset computation (the changed Service)", &mut alone.compute);
    line("    a full recomputation instead (every Service)", &mut alone.full_recompute);
    println!(
        "    per-Service / full recomputation, medians: {:.4}x ({} of {} Services recomputed per change)",
        pct(&alone.compute, 0.5) / pct(&alone.full_recompute, 0.5),
        alone.recomputed,
        args.services
    );
    line("  incremental sync: nft -f", &mut alone.apply);
    line("  incremental sync start -> new endpoint answers", &mut alone.live);
    println!("  polling meanwhile (every 1 ms): {}", alone.polls.summary());
    let l = &mut shipped.latency;
    line("connect through the ClusterIP", &mut l.c_vip);
    line("connect to the pod IP", &mut l.c_pod);
    line("connect + GET + response through the ClusterIP", &mut l.g_vip);
    line("connect + GET + response to the pod IP", &mut l.g_pod);
    println!("failed connections: {} through the ClusterIP, {} to the pod IP", l.failed_vip, l.failed_pod);
    println!(
        "ClusterIP / pod IP, medians: connect {:.2}x, request {:.2}x",
        pct(&l.c_vip, 0.5) / pct(&l.c_pod, 0.5),
        pct(&l.g_vip, 0.5) / pct(&l.g_pod, 0.5)
    );
    Ok(())
}

/// Connect and request times, through the ClusterIP and to the pod IP.
#[derive(Default)]
struct Latency {
    c_vip: Vec<Duration>,
    c_pod: Vec<Duration>,
    g_vip: Vec<Duration>,
    g_pod: Vec<Duration>,
    failed_vip: usize,
    failed_pod: usize,
}

struct Shipped {
    first_sync_ms: f64,
    live: Vec<Duration>,
    syncs: Vec<Duration>,
    polls: Polls,
    latency: Latency,
}

/// The shipped path: endpoint changes written to the store, then the latency comparison.
async fn through_actor(args: &ProxyBenchArgs, store: &Store, target: &Target<'_>) -> anyhow::Result<Shipped> {
    let (vip, pods) = (target.vip, target.pods);
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

    let (mut live, mut syncs, mut polls) = (vec![], vec![], Polls::default());
    for n in 0..args.changes {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (name, ip) = &pods[(n + 1) % 2];
        let (sum0, count0) = sync_seconds();
        put(store, &slice(0, &[*ip])).await?;
        live.push(until_answers(vip, name, Instant::now(), Duration::from_millis(5), &mut polls).await?);
        // Let the sync that made it live finish counting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (sum1, count1) = sync_seconds();
        if count1 > count0 {
            syncs.push(Duration::from_secs_f64((sum1 - sum0) / (count1 - count0) as f64));
        }
    }

    // Latency, interleaved so that machine noise hits both alike.
    let (_, pod_ip) = &pods[args.changes % 2];
    let direct = SocketAddr::from((*pod_ip, 80));
    let mut l = Latency::default();
    for _ in 0..args.connections {
        match get(vip).await {
            Ok((_, connect, total)) => {
                l.c_vip.push(connect);
                l.g_vip.push(total);
            }
            Err(_) => l.failed_vip += 1,
        }
        match get(direct).await {
            Ok((_, connect, total)) => {
                l.c_pod.push(connect);
                l.g_pod.push(total);
            }
            Err(_) => l.failed_pod += 1,
        }
    }
    Ok(Shipped { first_sync_ms: first_sum * 1e3, live, syncs, polls, latency: l })
}

async fn wait_table_gone(table: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && Command::new("nft")
            .args(["list", "table", "ip", table])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Alone {
    full_compute: Duration,
    full_apply: Duration,
    compute: Vec<Duration>,
    /// The same change's ruleset computed for every Service, from the same objects.
    full_recompute: Vec<Duration>,
    /// Services a change's sync recomputed.
    recomputed: usize,
    apply: Vec<Duration>,
    live: Vec<Duration>,
    polls: Polls,
}

/// A Proxier driven directly: the same table's full and incremental syncs split into ruleset
/// computation and `nft -f`, and when the change is live relative to the sync's start (the
/// kernel commits before nft exits, so "live" can come before the sync ends).
async fn proxier_alone(
    args: &ProxyBenchArgs,
    config: ProxierConfig,
    svcs: Vec<Service>,
    mut slices: Vec<EndpointSlice>,
    target: &Target<'_>,
) -> anyhow::Result<Alone> {
    let svcs = Arc::new(svcs);
    let mut proxier = Proxier::new(config.clone());
    let full = proxier
        .sync(&ServiceChanges::all(), &ServiceList::new(svcs.as_slice()), &SliceList::new(&slices))
        .context("full sync")?;
    until_answers(target.vip, &target.pods[0].0, Instant::now(), Duration::from_millis(5), &mut Polls::default())
        .await?;
    let mut out = Alone {
        full_compute: full.compute,
        full_apply: full.apply,
        compute: vec![],
        full_recompute: vec![],
        recomputed: 0,
        apply: vec![],
        live: vec![],
        polls: Polls::default(),
    };
    for n in 0..args.changes {
        // Spaced like the actor phase's changes, so one sync's aftermath does not slow the next.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (name, ip) = &target.pods[(n + 1) % 2];
        slices[0] = slice(0, &[*ip]);
        // Every Service's rules from the same objects, as a sync computed them before it
        // tracked changes per Service (both sides read prebuilt lists).
        let (all_services, all_slices) = (ServiceList::new(svcs.as_slice()), SliceList::new(&slices));
        let recompute = Instant::now();
        let mut rules = ProxyRules::new(&config.rules)?;
        rules.update(&ServiceChanges::all(), &all_services, &all_slices);
        out.full_recompute.push(recompute.elapsed());
        anyhow::ensure!(rules.endpoints() == full.endpoints, "the full recomputation programs the same table");
        let (svcs, slices) = (svcs.clone(), slices.clone());
        let mut changes = ServiceChanges::default();
        changes.mark("default", "svc-0");
        let started = Instant::now();
        // The sync blocks on nft: run it beside the polling, as the actor does.
        let task = tokio::task::spawn_blocking(move || {
            let stats = proxier.sync(&changes, &ServiceList::new(svcs.as_slice()), &SliceList::new(&slices));
            (proxier, stats)
        });
        let live = until_answers(target.vip, name, started, Duration::from_millis(1), &mut out.polls).await;
        let (back, stats) = task.await?;
        proxier = back;
        let stats = stats.context("incremental sync")?;
        out.live.push(live?);
        out.compute.push(stats.compute);
        out.recomputed = stats.recomputed;
        out.apply.push(stats.apply);
    }
    // Dropping the Proxier removes its table and route.
    drop(proxier);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The typed objects are what the bench wrote as JSON before: the same Service and slice.
    #[test]
    fn objects_are_the_services_and_slices_kube_proxy_reads() {
        let ip = Ipv4Addr::new(198, 18, 4, 1);
        assert_eq!(
            serde_json::to_value(service(0, ip)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "svc-0"},
                "spec": {"clusterIP": "198.18.4.1", "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}})
        );
        let ips = [Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2)];
        let endpoints: Vec<_> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}))
            .collect();
        assert_eq!(
            serde_json::to_value(slice(1, &ips)).unwrap(),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"namespace": "default", "name": "svc-1", "labels": {"kubernetes.io/service-name": "svc-1"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "endpoints": endpoints})
        );
    }
}
