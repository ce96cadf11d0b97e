//! Simulated nodes, like kwok: one actor holds any number of nodes. It registers them with
//! capacity and a Ready condition, renews their Leases in kube-node-lease, and turns pods
//! bound to them into Running/Ready pods with an IP; pods being deleted on them are removed
//! as a kubelet would once their containers are gone. A node can be stopped (it stops
//! heartbeating) to test node loss. Cost per node is a map entry and one Lease renewal per
//! period: one shared pod informer and one renewal loop serve all of them.
#![forbid(unsafe_code)]

use actix::prelude::*;
use futures::stream::{self, StreamExt};
use kubus_apimachinery::table::{format_rfc3339, format_rfc3339_micro};
use kubus_runtime::{Change, Client, Informer};
use prometheus::{register_int_counter_vec, IntCounterVec};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

static SIM_WRITES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_sim_node_writes_total",
        "Writes made by simulated nodes, by kind and result",
        &["kind", "result"]
    )
    .expect("registers once")
});

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub count: usize,
    pub prefix: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// Lease renewal period (upstream kubelet: 10 s for a 40 s lease).
    pub renew_every: Duration,
    /// Concurrent API calls while registering and renewing.
    pub concurrency: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            count: 3,
            prefix: "sim-".into(),
            cpu: "32".into(),
            memory: "256Gi".into(),
            pods: 110,
            renew_every: Duration::from_secs(10),
            concurrency: 32,
        }
    }
}

struct Shared {
    /// Node name -> index (for its pod CIDR).
    nodes: HashMap<String, usize>,
    stopped: HashSet<String>,
    /// Next pod IP per node.
    next_ip: HashMap<String, u32>,
}

pub struct SimNodes {
    config: SimConfig,
    client: Client,
    pods: Informer,
    shared: Arc<Mutex<Shared>>,
}

/// Stops heartbeating for one simulated node (as if it lost power).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct StopNode(pub String);

impl SimNodes {
    pub fn new(config: SimConfig, client: Client, pods: Informer) -> Self {
        let nodes = (0..config.count).map(|i| (format!("{}{i}", config.prefix), i)).collect();
        SimNodes {
            config,
            client,
            pods,
            shared: Arc::new(Mutex::new(Shared { nodes, stopped: HashSet::new(), next_ip: HashMap::new() })),
        }
    }

    fn node_object(name: &str, i: usize) -> Value {
        let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone, "type": "kubus-sim"},
                "annotations": {"kubus.io/simulated": "true"}},
            "spec": {"podCIDR": pod_cidr(i), "podCIDRs": [pod_cidr(i)]},
        })
    }

    fn node_status(config: &SimConfig, i: usize) -> Value {
        let now = format_rfc3339(SystemTime::now());
        let capacity = json!({"cpu": config.cpu, "memory": config.memory, "pods": config.pods.to_string(), "ephemeral-storage": "100Gi"});
        let cond = |t: &str, s: &str, reason: &str, msg: &str| {
            json!({"type": t, "status": s, "reason": reason, "message": msg,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        json!({"status": {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": node_ip(i)}, {"type": "Hostname", "address": format!("{}{i}", config.prefix)}],
            "nodeInfo": {"kubeletVersion": "v1.32.0-kubus-sim", "kubeProxyVersion": "v1.32.0-kubus-sim", "osImage": "Kubus simulated node",
                "kernelVersion": "sim", "containerRuntimeVersion": "kubus-sim://0.1", "operatingSystem": "linux", "architecture": "amd64",
                "machineID": "", "systemUUID": "", "bootID": ""},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }})
    }
}

fn pod_cidr(i: usize) -> String {
    format!("10.{}.{}.0/24", 128 + (i >> 8) % 128, i & 255)
}

/// 172.16.0.1 onwards: unique for the first million nodes.
fn node_ip(i: usize) -> String {
    let n = i + 1;
    format!("172.{}.{}.{}", 16 + ((n >> 16) & 15), (n >> 8) & 255, n & 255)
}

fn pod_ip(i: usize, n: u32) -> String {
    format!("10.{}.{}.{}", 128 + (i >> 8) % 128, i & 255, 2 + n % 250)
}

async fn record<T, E: std::fmt::Display>(kind: &str, r: Result<T, E>) -> Option<T> {
    match r {
        Ok(v) => {
            SIM_WRITES.with_label_values(&[kind, "ok"]).inc();
            Some(v)
        }
        Err(e) => {
            SIM_WRITES.with_label_values(&[kind, "error"]).inc();
            tracing::debug!(kind, error = %e, "simulated node write failed");
            None
        }
    }
}

impl Actor for SimNodes {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (config, client, shared) = (self.config.clone(), self.client.clone(), self.shared.clone());
        let register = async move {
            let nodes: Vec<(String, usize)> =
                shared.lock().expect("sim lock").nodes.iter().map(|(n, i)| (n.clone(), *i)).collect();
            stream::iter(nodes)
                .for_each_concurrent(config.concurrency, |(name, i)| {
                    let (client, config) = (client.clone(), config.clone());
                    async move {
                        // Like a kubelet, keep trying to register until the API server answers.
                        let mut backoff = Duration::from_millis(100);
                        loop {
                            let created = match client.create("", "nodes", None, &SimNodes::node_object(&name, i)).await
                            {
                                Ok(_) => true,
                                Err(e) if e.is_conflict() => true,
                                Err(e) => record::<(), _>("node", Err(e)).await.is_some(),
                            };
                            let status = SimNodes::node_status(&config, i);
                            if created
                                && record(
                                    "node-status",
                                    client.merge_patch("", "nodes", None, &name, Some("status"), &status).await,
                                )
                                .await
                                .is_some()
                            {
                                break;
                            }
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                        renew_lease(&client, &name, config.renew_every).await;
                    }
                })
                .await;
            tracing::info!(count = config.count, "simulated nodes registered");
        };
        ctx.spawn(register.into_actor(self));

        // Lease renewals: one loop for every node, spread over the period.
        let (config, client, shared) = (self.config.clone(), self.client.clone(), self.shared.clone());
        ctx.spawn(
            async move {
                let mut tick = tokio::time::interval(config.renew_every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let live: Vec<String> = {
                        let s = shared.lock().expect("sim lock");
                        s.nodes.keys().filter(|n| !s.stopped.contains(*n)).cloned().collect()
                    };
                    stream::iter(live)
                        .for_each_concurrent(config.concurrency, |name| {
                            let client = client.clone();
                            async move { renew_lease(&client, &name, config.renew_every).await }
                        })
                        .await;
                }
            }
            .into_actor(self),
        );

        // Pods: one informer for all nodes.
        let (client, shared, pods) = (self.client.clone(), self.shared.clone(), self.pods.clone());
        ctx.spawn(
            async move {
                let mut changes = pods.subscribe();
                pods.wait_synced().await;
                for p in pods.list() {
                    handle_pod(&client, &shared, &p).await;
                }
                loop {
                    match changes.recv().await {
                        Ok(Change::Applied { new, .. }) => handle_pod(&client, &shared, &new).await,
                        Ok(Change::Deleted(_)) => {}
                        Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            for p in pods.list() {
                                handle_pod(&client, &shared, &p).await;
                            }
                        }
                        Err(_) => return,
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Supervised for SimNodes {}

impl Handler<StopNode> for SimNodes {
    type Result = bool;
    fn handle(&mut self, msg: StopNode, _: &mut Self::Context) -> bool {
        let mut s = self.shared.lock().expect("sim lock");
        s.nodes.contains_key(&msg.0) && s.stopped.insert(msg.0)
    }
}

async fn renew_lease(client: &Client, node: &str, period: Duration) {
    let now = format_rfc3339_micro(SystemTime::now());
    let spec = json!({"holderIdentity": node, "leaseDurationSeconds": (period.as_secs() * 4).max(4), "renewTime": now});
    let r = client
        .merge_patch("coordination.k8s.io", "leases", Some("kube-node-lease"), node, None, &json!({"spec": spec}))
        .await;
    match r {
        Ok(_) => SIM_WRITES.with_label_values(&["lease", "ok"]).inc(),
        Err(e) if e.is_not_found() => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"}, "spec": spec});
            record("lease", client.create("coordination.k8s.io", "leases", Some("kube-node-lease"), &lease).await)
                .await;
        }
        Err(e) => {
            record::<(), _>("lease", Err(e)).await;
        }
    }
}

/// What the kubelet of a simulated node does with one pod.
async fn handle_pod(client: &Client, shared: &Arc<Mutex<Shared>>, pod: &Value) {
    let Some(node) = pod["spec"]["nodeName"].as_str() else {
        return;
    };
    let (ns, name) =
        (pod["metadata"]["namespace"].as_str().unwrap_or("default"), pod["metadata"]["name"].as_str().unwrap_or(""));
    let ip = {
        let mut s = shared.lock().expect("sim lock");
        let Some(&i) = s.nodes.get(node) else { return };
        if s.stopped.contains(node) {
            return;
        }
        if pod["metadata"]["deletionTimestamp"].is_string() {
            None
        } else if pod["status"]["phase"] == "Pending" {
            let n = s.next_ip.entry(node.to_string()).or_insert(0);
            *n += 1;
            Some((pod_ip(i, *n), node_ip(i)))
        } else {
            return;
        }
    };
    match ip {
        // Containers "stopped": the kubelet's final delete with no grace period.
        None => {
            record("pod-delete", client.delete("", "pods", Some(ns), name, "gracePeriodSeconds=0").await).await;
        }
        Some((pod_ip, host_ip)) => {
            let now = format_rfc3339(SystemTime::now());
            let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
            let statuses: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true, "started": true,
                    "restartCount": 0, "state": {"running": {"startedAt": now}}, "containerID": format!("sim://{ns}/{name}/{}", c["name"].as_str().unwrap_or(""))}))
                .collect();
            let status = json!({"status": {
                "phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                "startTime": now, "containerStatuses": statuses,
                "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
            }});
            record("pod-status", client.merge_patch("", "pods", Some(ns), name, Some("status"), &status).await).await;
        }
    }
}
