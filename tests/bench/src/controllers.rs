//! `kubus bench controllers`: the path users take at scale. `kubus up --sim-nodes N` runs as a
//! child; one Deployment is created with R replicas and driven through its life: created,
//! scheduled and Running; scaled to 2R and back; a rolling update of its image; deleted with
//! background and then (recreated) foreground propagation until its last pod is gone. Each
//! phase reports its time, the control plane's CPU seconds per pod (by thread: the API server,
//! the scheduler, the controller manager's controllers, the simulated nodes), RSS, and every
//! controller's reconciles and mean reconcile time; at the end, what is left in the queues.

use crate::sim_cluster::{label_values, metric, SimCluster};
use anyhow::bail;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const REPLICASETS: &str = "/apis/apps/v1/namespaces/default/replicasets";

/// What the process did between two readings.
pub(crate) struct Reading {
    at: Instant,
    ticks: u64,
    threads: BTreeMap<String, u64>,
    page: String,
}

impl Reading {
    pub(crate) async fn of(cluster: &SimCluster) -> anyhow::Result<Reading> {
        Ok(Reading {
            at: Instant::now(),
            ticks: cluster.cpu_ticks(),
            threads: cluster.thread_ticks(),
            page: cluster.metrics().await?,
        })
    }

    /// CPU seconds the threads whose names `pick` accepts used since `before` (a thread
    /// started again counts from zero).
    pub(crate) fn threads_cpu(&self, before: &Reading, pick: impl Fn(&str) -> bool) -> f64 {
        let ticks: u64 = self
            .threads
            .iter()
            .filter(|(name, _)| pick(name))
            .map(|(name, t)| t.saturating_sub(before.threads.get(name).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / crate::host::clock_ticks_per_second()
    }

    /// CPU seconds of the controller manager: its thread and each controller's (`kcm-*`).
    pub(crate) fn controller_manager_cpu(&self, before: &Reading) -> f64 {
        self.threads_cpu(before, |n| n == "kube-controller" || n.starts_with("kcm-"))
    }
}

struct Bench {
    cluster: SimCluster,
    timeout: Duration,
}

fn deployment(name: &str, replicas: usize, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image,
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}})
}

impl Bench {
    async fn reading(&self) -> anyhow::Result<Reading> {
        Reading::of(&self.cluster).await
    }

    async fn deployment_status(&self, name: &str) -> anyhow::Result<Option<Value>> {
        let (code, body) =
            self.cluster.request("GET", &format!("{DEPLOYMENTS}/{name}"), "application/json", b"").await?;
        match code {
            200 => Ok(Some(serde_json::from_slice(&body)?)),
            404 => Ok(None),
            _ => bail!("GET deployment {name}: {code}"),
        }
    }

    /// Polls until `done` holds for the deployment (None: it is gone) and the pod count;
    /// returns the time since `from`.
    async fn until(
        &self,
        what: &str,
        from: Instant,
        name: &str,
        done: impl Fn(Option<&Value>, u64) -> bool,
    ) -> anyhow::Result<Duration> {
        loop {
            let d = self.deployment_status(name).await?;
            let pods = self.pods().await?;
            if done(d.as_ref(), pods) {
                return Ok(from.elapsed());
            }
            if from.elapsed() > self.timeout {
                let status = d.map(|d| d["status"].clone()).unwrap_or(Value::Null);
                bail!("{what}: not done after {:?}: {pods} pods, deployment status {status}", self.timeout);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Pods the control plane holds, from its informers' gauge: a LIST of tens of thousands
    /// of pods five times a second would cost the API server more than the work measured.
    async fn pods(&self) -> anyhow::Result<u64> {
        let page = self.cluster.metrics().await?;
        Ok(metric(&page, "kubus_informer_objects", "resource=\"pods\"") as u64)
    }

    async fn send(&self, method: &str, path: &str, ct: &str, body: &Value, want: &[u16]) -> anyhow::Result<()> {
        self.cluster.send(method, path, ct, body, want).await
    }

    async fn scale(&self, name: &str, replicas: usize) -> anyhow::Result<()> {
        let patch = json!({"spec": {"replicas": replicas}});
        self.send("PATCH", &format!("{DEPLOYMENTS}/{name}"), "application/merge-patch+json", &patch, &[200]).await
    }
}

fn status_i(d: Option<&Value>, field: &str) -> i64 {
    d.and_then(|d| d["status"][field].as_i64()).unwrap_or(0)
}

/// Settled at `replicas`: all updated, available, and no extra pods.
fn settled(d: Option<&Value>, pods: u64, replicas: usize) -> bool {
    let r = replicas as i64;
    let observed = d.is_some_and(|d| d["status"]["observedGeneration"] == d["metadata"]["generation"]);
    observed
        && status_i(d, "updatedReplicas") == r
        && status_i(d, "availableReplicas") == r
        && status_i(d, "replicas") == r
        && pods == replicas as u64
}

/// Prints one phase: its time and what it cost.
pub(crate) fn report(phase: &str, took: Duration, pods: usize, before: &Reading, after: &Reading) {
    let hz = crate::host::clock_ticks_per_second();
    let cpu = (after.ticks - before.ticks) as f64 / hz;
    println!(
        "{phase:<44} {:>8.2} s   cpu {:>7.1} s ({:.2} ms/pod)",
        took.as_secs_f64(),
        cpu,
        cpu * 1e3 / pods.max(1) as f64
    );
    let mut by_thread: Vec<(String, f64)> = after
        .threads
        .iter()
        // A thread started again (a controller that lost leadership) counts from zero.
        .map(|(name, t)| (name.clone(), t.saturating_sub(before.threads.get(name).copied().unwrap_or(0)) as f64 / hz))
        .filter(|(_, s)| *s >= 0.05)
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    let threads: Vec<String> = by_thread.iter().map(|(n, s)| format!("{n} {s:.1}")).collect();
    println!("{:<44} {}", "    cpu s by thread", threads.join(", "));
    let elapsed = (after.at - before.at).as_secs_f64().max(1e-9);
    let mut rows = Vec::new();
    for c in label_values(&after.page, "controller_runtime_reconcile_total", "controller") {
        let filter = format!("controller=\"{c}\"");
        let n = metric(&after.page, "controller_runtime_reconcile_total", &filter)
            - metric(&before.page, "controller_runtime_reconcile_total", &filter);
        let sum = metric(&after.page, "controller_runtime_reconcile_time_seconds_sum", &filter)
            - metric(&before.page, "controller_runtime_reconcile_time_seconds_sum", &filter);
        if n >= 1.0 {
            rows.push(format!("{c} {n:.0} ({:.0}/s, mean {:.2} ms)", n / elapsed, sum / n * 1e3));
        }
    }
    println!("{:<44} {}", "    reconciles", rows.join(", "));
}

pub(crate) async fn run(nodes: usize, replicas: usize, timeout_s: u64, extra: Vec<String>) -> anyhow::Result<()> {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let cluster = SimCluster::start("controllers", nodes, &extra).await?;
    println!(
        "kubus bench controllers: {nodes} simulated nodes, a Deployment of {replicas} replicas, server {} (pid {})",
        cluster.addr, cluster.pid
    );
    let ready = cluster.wait_nodes_ready(nodes).await?;
    println!(
        "{:<44} {:>8.2} s   rss {:.0} MiB",
        format!("{nodes} nodes Ready"),
        ready.as_secs_f64(),
        cluster.rss_mib()
    );
    let b = Bench { cluster, timeout: Duration::from_secs(timeout_s) };
    let name = "big";
    let scheduled = |page: &str| metric(page, "scheduler_schedule_attempts_total", "result=\"scheduled\"");

    // Created, scheduled, Running.
    let before = b.reading().await?;
    let t0 = Instant::now();
    b.send("POST", DEPLOYMENTS, "application/json", &deployment(name, replicas, "busybox"), &[201]).await?;
    let created = b.until("create", t0, name, |_, pods| pods >= replicas as u64).await?;
    let mut scheduled_at = None;
    let running = loop {
        let page = b.cluster.metrics().await?;
        if scheduled_at.is_none() && scheduled(&page) - scheduled(&before.page) >= replicas as f64 {
            scheduled_at = Some(t0.elapsed());
        }
        let d = b.deployment_status(name).await?;
        if status_i(d.as_ref(), "availableReplicas") >= replicas as i64 {
            break t0.elapsed();
        }
        if t0.elapsed() > b.timeout {
            bail!("not all Running after {:?}: {:?}", b.timeout, d.map(|d| d["status"].clone()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let after = b.reading().await?;
    println!("{:<44} {:>8.2} s", format!("{replicas} pods created"), created.as_secs_f64());
    println!("{:<44} {:>8.2} s", format!("{replicas} pods scheduled"), scheduled_at.unwrap_or(running).as_secs_f64());
    report(&format!("{replicas} pods Running (Deployment available)"), running, replicas, &before, &after);
    println!("{:<44} {:.0} MiB", "    rss", b.cluster.rss_mib());

    // Scale to 2R and back.
    let before = b.reading().await?;
    let t = Instant::now();
    b.scale(name, 2 * replicas).await?;
    let up = b.until("scale up", t, name, |d, pods| settled(d, pods, 2 * replicas)).await?;
    let after = b.reading().await?;
    report(&format!("scale to {} (all available)", 2 * replicas), up, replicas, &before, &after);
    let before = after;
    let t = Instant::now();
    b.scale(name, replicas).await?;
    let down = b.until("scale down", t, name, |d, pods| settled(d, pods, replicas)).await?;
    let after = b.reading().await?;
    report(&format!("scale back to {replicas} (extra pods gone)"), down, replicas, &before, &after);

    // Rolling update of the image.
    let before = after;
    let t = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}});
    b.send("PATCH", &format!("{DEPLOYMENTS}/{name}"), "application/strategic-merge-patch+json", &patch, &[200]).await?;
    let rolled = b.until("rolling update", t, name, |d, pods| settled(d, pods, replicas)).await?;
    let after = b.reading().await?;
    report("rolling update of the image", rolled, replicas, &before, &after);

    // Background deletion: the Deployment goes at once, the garbage collector takes the rest.
    let before = after;
    let t = Instant::now();
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
    b.send("DELETE", &format!("{DEPLOYMENTS}/{name}"), "application/json", &opts, &[200, 202]).await?;
    let gone = b.until("background delete", t, name, |d, pods| d.is_none() && pods == 0).await?;
    let rs_left = b.cluster.count(REPLICASETS).await?;
    let after = b.reading().await?;
    report("cascading delete, background (last pod gone)", gone, replicas, &before, &after);
    if rs_left > 0 {
        println!("    {rs_left} ReplicaSets left right after the last pod");
    }

    // Foreground deletion of a fresh one: the Deployment waits for its dependents.
    let t = Instant::now();
    b.send("POST", DEPLOYMENTS, "application/json", &deployment(name, replicas, "busybox"), &[201]).await?;
    let again = b.until("re-create", t, name, |d, _| status_i(d, "availableReplicas") >= replicas as i64).await?;
    println!("{:<44} {:>8.2} s", format!("re-created, {replicas} available"), again.as_secs_f64());
    let before = b.reading().await?;
    let t = Instant::now();
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"});
    b.send("DELETE", &format!("{DEPLOYMENTS}/{name}"), "application/json", &opts, &[200, 202]).await?;
    let gone = b.until("foreground delete", t, name, |d, pods| d.is_none() && pods == 0).await?;
    let after = b.reading().await?;
    report("cascading delete, foreground (Deployment gone)", gone, replicas, &before, &after);

    // Nothing left growing: queues drain once the work is done.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let page = b.cluster.metrics().await?;
    let queues: Vec<String> = label_values(&page, "workqueue_depth", "name")
        .into_iter()
        .map(|q| format!("{q} {}", metric(&page, "workqueue_depth", &format!("name=\"{q}\""))))
        .collect();
    println!("{:<44} {}", "queue depths 5 s after", queues.join(", "));
    println!("{:<44} {:.0} MiB", "rss at the end", b.cluster.rss_mib());
    Ok(())
}
