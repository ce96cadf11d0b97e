//! A `kubus up --no-node --sim-nodes N` child process for the benches that measure the control
//! plane at scale (`cluster`, `controllers`): started in a temp dir, read through its HTTP API
//! and its /metrics, stopped and removed on drop (also after a failure).

use crate::host::{cpu_ticks, stop, vm_rss_kib};
use crate::http::Conn;
use anyhow::bail;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::List;
use kubus_apimachinery::conditions;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(crate) struct SimCluster {
    pub addr: String,
    pub pid: u32,
    pub started: Instant,
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads one series (summed over the label sets matching `filter`) from a /metrics page.
pub(crate) fn metric(page: &str, name: &str, filter: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The values of one label across the series of a metric.
pub(crate) fn label_values(page: &str, name: &str, label: &str) -> Vec<String> {
    let key = format!("{label}=\"");
    let mut out: Vec<String> = page
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Events (a list's items) summed up by reason: "reason xN ("one message")", joined by "; ".
pub(crate) fn warning_summary(events: &[serde_json::Value]) -> String {
    let mut by: std::collections::BTreeMap<String, (u64, String)> = std::collections::BTreeMap::new();
    for e in events {
        let reason = e["reason"].as_str().unwrap_or("").to_string();
        let entry = by.entry(reason).or_insert((0, e["message"].as_str().unwrap_or("").to_string()));
        entry.0 += e["count"].as_u64().unwrap_or(1);
    }
    by.iter().map(|(r, (n, m))| format!("{r} x{n} (\"{m}\")")).collect::<Vec<_>>().join("; ")
}

impl SimCluster {
    /// Starts `kubus up` with `nodes` simulated nodes (and `extra` flags) and waits for its API.
    pub async fn start(bench: &str, nodes: usize, extra: &[&str]) -> anyhow::Result<SimCluster> {
        let dir = std::env::temp_dir().join(format!("kubus-bench-{bench}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let started = Instant::now();
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["up", "--no-node", "--dns-port", "0", "--cluster", "bench", "--sim-nodes", &nodes.to_string()])
            .args(extra)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--api-port")
            .arg(port.to_string())
            .env("KUBUS_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("kubus.log"))?)
            .spawn()?;
        let cluster = SimCluster { addr: format!("127.0.0.1:{port}"), pid: child.id(), started, child, dir };
        loop {
            // The kubeconfig is written once the API port serves; it holds the credentials.
            let kubeconfig = cluster.dir.join("kubeconfig");
            if kubeconfig.exists() {
                crate::http::register_kubeconfig(&kubeconfig)?;
                if Conn::open(&cluster.addr).await.is_ok() {
                    return Ok(cluster);
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("kubus did not start; see {}", cluster.dir.join("kubus.log").display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Nodes whose Ready condition is True, and all nodes.
    pub async fn nodes_ready(&self) -> anyhow::Result<(usize, usize)> {
        let list: List<Node> = serde_json::from_slice(&self.get("/api/v1/nodes").await?)?;
        let ready = list.items.iter().filter(|n| conditions::is_true(conditions::of_node(n), "Ready")).count();
        Ok((ready, list.items.len()))
    }

    /// Waits until `nodes` nodes are Ready; the time since the process started.
    pub async fn wait_nodes_ready(&self, nodes: usize) -> anyhow::Result<Duration> {
        loop {
            let (ready, _) = self.nodes_ready().await?;
            if ready >= nodes {
                return Ok(self.started.elapsed());
            }
            if self.started.elapsed() > Duration::from_secs(600) {
                bail!("only {ready}/{nodes} nodes Ready after 600 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// One request on a fresh connection (phases between polls outlast HTTP keep-alive).
    pub async fn request(&self, method: &str, path: &str, ct: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut c = Conn::open(&self.addr).await?;
        c.request(method, path, ct, body).await
    }

    /// Sends a JSON body and fails unless the answer's code is one of `want`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        ct: &str,
        body: &serde_json::Value,
        want: &[u16],
    ) -> anyhow::Result<()> {
        let (code, resp) = self.request(method, path, ct, body.to_string().as_bytes()).await?;
        if !want.contains(&code) {
            bail!("{method} {path}: {code} {}", String::from_utf8_lossy(&resp));
        }
        Ok(())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let (code, body) = self.request("GET", path, "application/json", b"").await?;
        if code != 200 {
            bail!("GET {path}: {code}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    /// The Warning events of the default namespace, summed up by reason ("" when none).
    pub async fn warnings(&self) -> anyhow::Result<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&self.get("/api/v1/namespaces/default/events?fieldSelector=type%3DWarning").await?)?;
        Ok(warning_summary(v["items"].as_array().map_or(&[], Vec::as_slice)))
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&self.get("/metrics").await?).into_owned())
    }

    /// How many objects a collection holds (one item and `remainingItemCount`).
    pub async fn count(&self, collection: &str) -> anyhow::Result<u64> {
        let v: serde_json::Value = serde_json::from_slice(&self.get(&format!("{collection}?limit=1")).await?)?;
        let items = v["items"].as_array().map_or(0, |a| a.len() as u64);
        Ok(items + v["metadata"]["remainingItemCount"].as_u64().unwrap_or(0))
    }

    /// The embedded NATS server's URL (the child writes it to its data dir).
    pub fn nats_url(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.join("nats.url"))?.trim().to_string())
    }

    pub fn rss_mib(&self) -> f64 {
        vm_rss_kib(self.pid).map_or(0.0, |kb| kb as f64 / 1024.0)
    }

    /// CPU ticks the whole process used so far.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid).unwrap_or(0)
    }

    /// CPU ticks per thread name (components name their threads: see `kubus up`).
    pub fn thread_ticks(&self) -> std::collections::BTreeMap<String, u64> {
        crate::host::thread_ticks(self.pid)
    }
}
