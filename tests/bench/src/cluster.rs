//! `kubus bench cluster`: the scheduler and controllers at scale. `kubus up --sim-nodes N` runs
//! as a child process; M pods are created through the API; the bench reports nodes-Ready time,
//! scheduling throughput, time to Running and the control plane's RSS.

use anyhow::bail;
use std::time::{Duration, Instant};

use crate::api::phase;
use crate::http::expect;
use crate::sim_cluster::{metric, SimCluster};
use crate::stats::report;

pub(crate) async fn run(nodes: usize, pods: usize, anti_affinity: bool, concurrency: usize) -> anyhow::Result<()> {
    let cluster = SimCluster::start("cluster", nodes, &[]).await?;
    let (addr, pid) = (cluster.addr.clone(), cluster.pid);
    println!(
        "kubus bench cluster: {nodes} simulated nodes, {pods} pods{}, server {addr} (pid {pid})",
        if anti_affinity { " with required anti-affinity" } else { "" }
    );
    let ready_at = cluster.wait_nodes_ready(nodes).await?;
    println!("{:<40} {:>8.2} s", format!("{nodes} nodes Ready (from process start)"), ready_at.as_secs_f64());
    let rss_nodes = cluster.rss_mib();

    // Pods, created as fast as `concurrency` clients can.
    let page = cluster.metrics().await?;
    let scheduled0 = metric(&page, "scheduler_schedule_attempts_total", "result=\"scheduled\"");
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
        let page = cluster.metrics().await?;
        let scheduled = metric(&page, "scheduler_schedule_attempts_total", "result=\"scheduled\"") - scheduled0;
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
    let page = cluster.metrics().await?;
    let algo_sum = metric(&page, "scheduler_scheduling_algorithm_duration_seconds_sum", "");
    let algo_count = metric(&page, "scheduler_scheduling_algorithm_duration_seconds_count", "");
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
        cluster.rss_mib()
    );
    Ok(())
}
