//! `kubus up` with its real node as a child process, for the benches that run real containers
//! on this host (root): start, wait for the node to be Ready, and on drop stop it and remove
//! what the node made (`kubus node-reset`: containers, shims, mounts, sandboxes, its bridge and
//! cgroups), then the data dir.

use crate::host::{kill_nats_server, node_reset, stop, token};
use crate::http::json_request;
use anyhow::{bail, Context as _};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Host names of one run's node. Each bench has its own `tag` (one letter), apart from the test
/// suite's (`kbt*`, `/kubus-t*`) and the node bench's (`kbb*`, `/kubus-b*`), so that no leftover
/// sweep of one takes another's.
pub(crate) struct NodeNames {
    pub node_name: String,
    pub bridge: String,
    pub cgroup_root: String,
    pub cluster_cidr: String,
}

impl NodeNames {
    pub(crate) fn new(bench: &str, tag: char, tok: &str) -> NodeNames {
        let seed = u32::from_str_radix(tok, 16).unwrap_or(0);
        let (a, b) = (100 + (seed >> 8) % 100, (seed % 64) * 4);
        NodeNames {
            node_name: format!("bench-{bench}-{tok}"),
            bridge: format!("kb{tag}{tok}"),
            cgroup_root: format!("/kubus-{tag}{tok}"),
            cluster_cidr: format!("10.{a}.{b}.0/22"),
        }
    }
}

/// A running `kubus up` with its node; stopped and cleaned up on drop.
pub(crate) struct RealNode {
    exe: PathBuf,
    pub dir: PathBuf,
    pub names: NodeNames,
    child: Option<std::process::Child>,
    /// host:port of the API server.
    pub addr: String,
    pub pid: u32,
    /// The node's allocatable resources as it reported them.
    pub allocatable: Value,
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
        kill_nats_server(&self.dir);
        node_reset(&self.exe, &self.dir.join("node"), &self.names.bridge, &self.names.cgroup_root);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RealNode {
    /// Starts `kubus up` (its own nats-server, a Service range `service_cidr` apart from the
    /// other benches', extra flags `up_args`) and waits up to two minutes for its node to be
    /// Ready. The log is `<dir>/kubus.log`.
    pub(crate) async fn start(
        bench: &str,
        tag: char,
        service_cidr: &str,
        up_args: &[String],
    ) -> anyhow::Result<RealNode> {
        let tok = token()?;
        let exe = std::env::current_exe().context("locating the kubus binary")?;
        let dir = std::env::temp_dir().join(format!("kubus-bench-{bench}-{tok}"));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut node = RealNode {
            exe,
            dir,
            names: NodeNames::new(bench, tag, &tok),
            child: None,
            addr: format!("127.0.0.1:{port}"),
            pid: 0,
            allocatable: Value::Null,
        };
        let n = &node.names;
        let child = Command::new(&node.exe)
            .args(["up", "--nats-listen", "127.0.0.1:0", "--cluster", "bench", "--dns-port", "0", "--data-dir"])
            .arg(&node.dir)
            .args(["--api-port", &port.to_string(), "--cluster-cidr", &n.cluster_cidr, "--service-cidr", service_cidr])
            .args(["--node-name", &n.node_name, "--bridge", &n.bridge, "--cgroup-root", &n.cgroup_root])
            .arg("--pod-log-dir")
            .arg(node.dir.join("pod-logs"))
            .args(up_args)
            .env("KUBUS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(node.dir.join("kubus.log"))?)
            .spawn()?;
        node.pid = child.id();
        node.child = Some(child);
        let started = Instant::now();
        let node_path = format!("/api/v1/nodes/{}", node.names.node_name);
        loop {
            if let Ok((200, v)) = json_request(&node.addr, "GET", &node_path, None).await {
                if condition_true(&v, "Ready") {
                    node.allocatable = v["status"]["allocatable"].clone();
                    return Ok(node);
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("the node did not get Ready; see {}", node.dir.join("kubus.log").display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether an object's `status.conditions` has `kind` True (and it is not being deleted).
pub(crate) fn condition_true(obj: &Value, kind: &str) -> bool {
    obj["metadata"]["deletionTimestamp"].is_null()
        && obj["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_stay_clear_of_the_tests_and_the_node_bench() {
        for tag in ['s', 'a'] {
            for tok in ["000000", "ffffff", "a1b2c3"] {
                let n = NodeNames::new("x", tag, tok);
                // Linux interface names are at most 15 bytes.
                assert!(n.bridge.len() <= 15, "{}", n.bridge);
                assert!(!n.bridge.starts_with("kbt") && !n.bridge.starts_with("kbb"));
                assert!(!n.cgroup_root.starts_with("/kubus-t") && !n.cgroup_root.starts_with("/kubus-b"));
            }
        }
    }

    #[test]
    fn conditions_count_only_when_true_and_not_deleted() {
        let ready =
            serde_json::json!({"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(condition_true(&ready, "Ready"));
        assert!(!condition_true(&ready, "Available"));
        let mut going = ready.clone();
        going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        assert!(!condition_true(&going, "Ready"));
    }
}
