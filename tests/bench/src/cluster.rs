//! `kubus bench cluster`: the scheduler and controllers at scale. `kubus up --sim-nodes N` runs
//! as a child process; M pods are created through the API; the bench reports nodes-Ready time,
//! scheduling throughput, time to Running and the control plane's RSS.

use anyhow::bail;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::List;
use kubus_apimachinery::conditions;
use std::time::{Duration, Instant};

use crate::api::phase;
use crate::host::{stop, vm_rss_kib};
use crate::http::{expect, Conn};
use crate::stats::report;

/// Reads one counter (summed over the label sets matching `filter`) from a /metrics page.
fn metric(page: &str, name: &str, filter: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rss_mib(pid: u32) -> f64 {
    vm_rss_kib(pid).map_or(0.0, |kb| kb as f64 / 1024.0)
}

/// The `kubus up` child and its data dir: stopped and removed on drop, also after a failure.
struct Child(std::process::Child, std::path::PathBuf);

impl Drop for Child {
    fn drop(&mut self) {
        stop(&mut self.0);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

pub(crate) async fn run(nodes: usize, pods: usize, anti_affinity: bool, concurrency: usize) -> anyhow::Result<()> {
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
        let list: List<Node> = serde_json::from_slice(&body)?;
        let ready = list.items.iter().filter(|n| conditions::is_true(conditions::of_node(n), "Ready")).count();
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
