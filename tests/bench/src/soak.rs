//! `kubus bench soak`: a long run with steady churn, to show that nothing grows with uptime.
//! `kubus up --sim-nodes N` runs as a child; Deployments are scaled up and down and rolled
//! one after another, a Service selects a Deployment of thousands of replicas, and a few pods
//! never fit anywhere. Every report period it prints the control plane's CPU and RSS,
//! reconciles per second by controller, queue depths, the objects stream's messages and bytes,
//! the watch cache's size, a paged LIST of every pod (time, pages, any 410), watch delivery
//! latency, and how many nodes are not Ready (and NodeNotReady Events of the last hour). Flat
//! series after warm-up are the goal.

use crate::sim_cluster::{label_values, metric, SimCluster};
use crate::stats::{pct, sorted};
use anyhow::bail;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NS: &str = "/api/v1/namespaces/default";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// The value each timed ConfigMap update carries, unique over the run.
static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// How long the churn runs (Go duration).
    #[arg(long, default_value = "2h", value_parser = kubus_apimachinery::time::parse_go_duration)]
    duration: Duration,
    /// How often a report line is printed (Go duration).
    #[arg(long, default_value = "10m", value_parser = kubus_apimachinery::time::parse_go_duration)]
    report_every: Duration,
    /// Deployments that are scaled and rolled in turn, and their largest size.
    #[arg(long, default_value_t = 20)]
    deployments: usize,
    #[arg(long, default_value_t = 500)]
    replicas: usize,
    /// Endpoints of the one Service (its Deployment's replicas).
    #[arg(long, default_value_t = 10000)]
    endpoints: usize,
    /// How often one Deployment is scaled (Go duration); every sixth time one is also rolled.
    /// Slower churn keeps the cluster near its largest size.
    #[arg(long, default_value = "10s", value_parser = kubus_apimachinery::time::parse_go_duration)]
    scale_every: Duration,
    /// Pods that never fit (a node selector no node has).
    #[arg(long, default_value_t = 50)]
    unschedulable: usize,
    /// Extra `kubus up` flags (repeatable).
    #[arg(long = "up-arg", allow_hyphen_values = true)]
    up_args: Vec<String>,
}

fn deployment(name: &str, replicas: usize, image: &str, node_selector: Option<Value>) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": node_selector,
                    "containers": [{"name": "c", "image": image, "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}})
}

/// One report period's readings.
struct Reading {
    at: Instant,
    ticks: u64,
    page: String,
}

/// A paged LIST of every pod, 500 a page: (time, pages, pods, 410s met).
async fn paged_list(c: &SimCluster) -> anyhow::Result<(Duration, usize, usize, usize)> {
    let started = Instant::now();
    let (mut pages, mut pods, mut gone) = (0, 0, 0);
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/api/v1/pods?limit=500&continue={t}"),
            None => "/api/v1/pods?limit=500".to_string(),
        };
        let (code, body) = c.request("GET", &path, "application/json", b"").await?;
        if code == 410 {
            gone += 1;
            token = None;
            continue;
        }
        if code != 200 {
            bail!("GET {path}: {code}");
        }
        let v: Value = serde_json::from_slice(&body)?;
        pages += 1;
        pods += v["items"].as_array().map_or(0, Vec::len);
        token = v["metadata"]["continue"].as_str().filter(|t| !t.is_empty()).map(String::from);
        if token.is_none() {
            return Ok((started.elapsed(), pages, pods, gone));
        }
    }
}

/// Watch delivery: `n` updates of a watched ConfigMap, each timed until the watch delivers it.
async fn watch_latency(c: &SimCluster, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut conn = crate::http::Conn::open(&c.addr).await?;
    conn.send_head("GET", &format!("{NS}/configmaps?watch=true&labelSelector=bench%3Dsoak"), "application/json", b"")
        .await?;
    conn.read_head().await?;
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let patch = json!({"data": {"seq": seq.to_string()}});
        let sent = Instant::now();
        c.send("PATCH", &format!("{NS}/configmaps/soak-watched"), "application/merge-patch+json", &patch, &[200])
            .await?;
        'seen: loop {
            let chunk = tokio::time::timeout(Duration::from_secs(30), conn.next_chunk()).await??;
            let Some(chunk) = chunk else { bail!("the watch ended") };
            pending.extend_from_slice(&chunk);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                if crate::api::seq_of(&line) == Some(seq) {
                    out.push(sent.elapsed());
                    break 'seen;
                }
            }
        }
    }
    Ok(out)
}

/// Times the node controller marked a node NotReady (its NodeNotReady Events; they live an
/// hour, `--event-ttl`).
async fn not_ready_events(c: &SimCluster) -> anyhow::Result<usize> {
    let v: Value = serde_json::from_slice(&c.get("/api/v1/events?fieldSelector=reason%3DNodeNotReady").await?)?;
    Ok(v["items"].as_array().map_or(0, Vec::len))
}

/// The objects stream's messages and bytes, from JetStream.
async fn stream_size(js: &async_nats::jetstream::Context) -> anyhow::Result<(u64, u64)> {
    let mut s = js.get_stream("KUBUS_bench_OBJECTS").await?;
    let info = s.info().await?;
    Ok((info.state.messages, info.state.bytes))
}

async fn report(c: &SimCluster, js: &async_nats::jetstream::Context, before: &Reading) -> anyhow::Result<Reading> {
    let now = Reading { at: Instant::now(), ticks: c.cpu_ticks(), page: c.metrics().await? };
    let secs = (now.at - before.at).as_secs_f64().max(1e-9);
    let cpu = (now.ticks.saturating_sub(before.ticks)) as f64 / crate::host::clock_ticks_per_second() / secs;
    let mut rates = BTreeMap::new();
    for ctl in label_values(&now.page, "controller_runtime_reconcile_total", "controller") {
        let f = format!("controller=\"{ctl}\"");
        let n = metric(&now.page, "controller_runtime_reconcile_total", &f)
            - metric(&before.page, "controller_runtime_reconcile_total", &f);
        rates.insert(ctl, n / secs);
    }
    let queues: Vec<(String, f64)> = label_values(&now.page, "workqueue_depth", "name")
        .into_iter()
        .map(|q| {
            let d = metric(&now.page, "workqueue_depth", &format!("name=\"{q}\""));
            (q, d)
        })
        .collect();
    let (messages, bytes) = stream_size(js).await?;
    let (list_took, pages, pods, gone) = paged_list(c).await?;
    let lat = sorted(watch_latency(c, 20).await?);
    let (ready, nodes) = c.nodes_ready().await?;
    let not_ready = nodes - ready;
    let marked = not_ready_events(c).await?;
    let elapsed = c.started.elapsed().as_secs_f64() / 60.0;
    println!(
        "t={elapsed:>5.1} min  cpu {:>4.0}%  rss {:>5.0} MiB  pods {pods}  stream {messages} msgs {:.1} MiB  watch cache {:.0} objects  \
         LIST pods {:.2} s / {pages} pages, 410s {gone}  watch p50 {:.1} ms max {:.1} ms  nodes not Ready {not_ready} (NodeNotReady events {marked})",
        cpu * 100.0,
        c.rss_mib(),
        bytes as f64 / (1 << 20) as f64,
        metric(&now.page, "kubus_apiserver_watch_cache_objects", ""),
        list_took.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 1.0),
    );
    let rates: Vec<String> = rates.iter().filter(|(_, r)| **r >= 0.01).map(|(c, r)| format!("{c} {r:.1}")).collect();
    println!("    reconciles/s  {}", rates.join(", "));
    let queues: Vec<String> = queues.iter().filter(|(_, d)| *d > 0.0).map(|(q, d)| format!("{q} {d:.0}")).collect();
    println!("    queues        {}", if queues.is_empty() { "all empty".to_string() } else { queues.join(", ") });
    Ok(now)
}

pub(crate) async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let extra: Vec<&str> = args.up_args.iter().map(String::as_str).collect();
    let c = SimCluster::start("soak", args.nodes, &extra).await?;
    println!(
        "kubus bench soak: {} simulated nodes, {} Deployments of up to {} replicas churning, a Service of {} endpoints, \
         {} unschedulable pods, {:?} with a report every {:?}; server {} (pid {})",
        args.nodes,
        args.deployments,
        args.replicas,
        args.endpoints,
        args.unschedulable,
        args.duration,
        args.report_every,
        c.addr,
        c.pid
    );
    c.wait_nodes_ready(args.nodes).await?;
    let nats = kubus_bus::connect(&c.nats_url()?, "kubus-bench-soak").await?;
    let js = async_nats::jetstream::new(nats);

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "soak-watched", "labels": {"bench": "soak"}}, "data": {"seq": "0"}});
    c.send("POST", &format!("{NS}/configmaps"), "application/json", &cm, &[201]).await?;
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
        "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    c.send("POST", &format!("{NS}/services"), "application/json", &svc, &[201]).await?;
    let backend = deployment("backend", args.endpoints, "busybox", None);
    c.send("POST", DEPLOYMENTS, "application/json", &backend, &[201]).await?;
    let nowhere = deployment("nowhere", args.unschedulable, "busybox", Some(json!({"kubus.io/nowhere": "true"})));
    c.send("POST", DEPLOYMENTS, "application/json", &nowhere, &[201]).await?;
    for i in 0..args.deployments {
        let d = deployment(&format!("churn-{i}"), args.replicas, "busybox", None);
        c.send("POST", DEPLOYMENTS, "application/json", &d, &[201]).await?;
    }

    let started = Instant::now();
    let mut reading = Reading { at: Instant::now(), ticks: c.cpu_ticks(), page: c.metrics().await? };
    let mut next_report = started + args.report_every;
    let mut tick = 0usize;
    while started.elapsed() < args.duration {
        // Every `scale_every` (10 s) one Deployment is scaled (down to half, or back up); every
        // sixth time (a minute) one is rolled to the other image.
        let d = format!("{DEPLOYMENTS}/churn-{}", tick % args.deployments);
        let replicas = if (tick / args.deployments).is_multiple_of(2) { args.replicas / 2 } else { args.replicas };
        c.send("PATCH", &d, "application/merge-patch+json", &json!({"spec": {"replicas": replicas}}), &[200]).await?;
        if tick.is_multiple_of(6) {
            let image = if (tick / 6).is_multiple_of(2) { "busybox:1.36" } else { "busybox:1.35" };
            let rolled = format!("{DEPLOYMENTS}/churn-{}", (tick / 6) % args.deployments);
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
            c.send("PATCH", &rolled, "application/strategic-merge-patch+json", &patch, &[200]).await?;
        }
        tick += 1;
        if Instant::now() >= next_report {
            reading = report(&c, &js, &reading).await?;
            next_report += args.report_every;
        }
        tokio::time::sleep(args.scale_every).await;
    }
    report(&c, &js, &reading).await?;
    Ok(())
}
