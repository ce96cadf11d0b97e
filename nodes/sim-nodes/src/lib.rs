//! Simulated nodes, like kwok: one actor holds any number of nodes. It registers them with
//! capacity and a Ready condition, renews their Leases in kube-node-lease, and turns pods
//! bound to them into Running/Ready pods with an IP; pods being deleted on them are removed
//! as a kubelet would once their containers are gone. Pods that are meant to finish (see
//! [`runs`]) are reported terminated when their simulated run ends. A node can be stopped (it
//! stops heartbeating) to test node loss. Cost per node is a map entry and one Lease renewal
//! per period: one shared pod informer, one renewal loop and one delay queue serve all of them.
#![forbid(unsafe_code)]

pub mod runs;

use actix::prelude::*;
use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStatus, DaemonEndpoint, HostIP, Node, NodeAddress,
    NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kubus_apimachinery::pod as podutil;
use kubus_apimachinery::ObjectKey;
use kubus_apimachinery::{time, ObjectExt};
use kubus_controller_runtime::controller::{run_workers, Action, Reconciler};
use kubus_controller_runtime::{node_lease, Change, Client, DeleteParams, Informer, WorkQueue};
use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};
use runs::{Run, RunPlan, Timers};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

static SIM_WRITES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_sim_node_writes_total",
        "Writes made by simulated nodes, by kind and result",
        &["kind", "result"]
    )
    .expect("registers once")
});

static RUN_TIMERS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kubus_sim_node_run_timers", "Runs of finishing pods whose end simulated nodes are waiting for")
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
    /// Concurrent API calls while registering and renewing, and pods handled at once.
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
            concurrency: 64,
        }
    }
}

struct Shared {
    /// Node name -> index (for its pod CIDR).
    nodes: HashMap<String, usize>,
    stopped: HashSet<String>,
    /// Next pod IP per node.
    next_ip: HashMap<String, u32>,
    /// The current run of each finishing pod, by uid.
    runs: HashMap<String, Run>,
}

impl Shared {
    /// Drops a pod's run and its timer (the pod went, ended, or its node stopped).
    fn forget_run(&mut self, timers: &Timers<String>, uid: &str) {
        if self.runs.remove(uid).is_some() {
            timers.cancel(&uid.to_string());
        }
    }
}

pub struct SimNodes {
    config: SimConfig,
    client: Client,
    pods: Informer<Pod>,
    nodes: Option<Informer<Node>>,
    shared: Arc<Mutex<Shared>>,
    /// When each running finishing pod's run ends (keyed by uid).
    timers: Arc<Timers<String>>,
}

/// Stops heartbeating for one simulated node (as if it lost power).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct StopNode(pub String);

impl SimNodes {
    /// The nodes' own Node objects: a node the lifecycle controller marked Unknown while it
    /// could not renew its Lease posts Ready again (as a kubelet writes its view back).
    pub fn with_nodes(mut self, nodes: Informer<Node>) -> Self {
        self.nodes = Some(nodes);
        self
    }

    pub fn new(config: SimConfig, client: Client, pods: Informer<Pod>) -> Self {
        let nodes = (0..config.count).map(|i| (format!("{}{i}", config.prefix), i)).collect();
        SimNodes {
            config,
            client,
            pods,
            nodes: None,
            shared: Arc::new(Mutex::new(Shared {
                nodes,
                stopped: HashSet::new(),
                next_ip: HashMap::new(),
                runs: HashMap::new(),
            })),
            timers: Arc::new(Timers::new(Some(RUN_TIMERS.clone()))),
        }
    }

    fn node_object(name: &str, i: usize) -> Node {
        let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
        let labels = [
            ("kubernetes.io/hostname", name),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("topology.kubernetes.io/zone", zone),
            ("type", "kubus-sim"),
        ];
        Node {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                annotations: Some([("kubus.io/simulated".to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some(pod_cidr(i)),
                pod_cidrs: Some(vec![pod_cidr(i)]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node_status(config: &SimConfig, i: usize, now: &Time) -> NodeStatus {
        let capacity: BTreeMap<String, Quantity> = [
            ("cpu", config.cpu.clone()),
            ("memory", config.memory.clone()),
            ("pods", config.pods.to_string()),
            ("ephemeral-storage", "100Gi".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v)))
        .collect();
        let version = "v1.32.0-kubus-sim".to_string();
        NodeStatus {
            allocatable: Some(capacity.clone()),
            capacity: Some(capacity),
            conditions: Some(kubus_apimachinery::conditions::node_conditions(None, now, &[])),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: node_ip(i) },
                NodeAddress { type_: "Hostname".into(), address: format!("{}{i}", config.prefix) },
            ]),
            node_info: Some(NodeSystemInfo {
                kubelet_version: version.clone(),
                kube_proxy_version: version,
                os_image: "Kubus simulated node".into(),
                kernel_version: "sim".into(),
                container_runtime_version: "kubus-sim://0.1".into(),
                operating_system: "linux".into(),
                architecture: "amd64".into(),
                ..Default::default()
            }),
            daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }) }),
            ..Default::default()
        }
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
                            let created = match client.create(&SimNodes::node_object(&name, i)).await {
                                Ok(_) => true,
                                Err(e) if e.is_conflict() => true,
                                Err(e) => record::<(), _>("node", Err(e)).await.is_some(),
                            };
                            let status = json!({"status": SimNodes::node_status(&config, i, &time::now())});
                            if created
                                && record("node-status", client.merge_patch_status::<Node>("", &name, &status).await)
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

        // A node marked Unknown by the lifecycle controller (its Lease was late) while it runs
        // posts its Ready status again, as a kubelet writes back its own view.
        if let Some(nodes) = self.nodes.clone() {
            let (config, client, shared) = (self.config.clone(), self.client.clone(), self.shared.clone());
            ctx.spawn(
                async move {
                    let mut changes = nodes.subscribe();
                    loop {
                        let node = match changes.recv().await {
                            Ok(Change::Applied { new, .. }) => new,
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        };
                        let index = {
                            let s = shared.lock().expect("sim lock");
                            match s.nodes.get(node.name()) {
                                Some(&i) if !s.stopped.contains(node.name()) => i,
                                _ => continue,
                            }
                        };
                        // Only the controller's Unknown is overwritten: a NotReady someone reports
                        // for the node stands (tests play a kubelet that way).
                        let ready = kubus_apimachinery::conditions::status(
                            kubus_apimachinery::conditions::of_node(&node),
                            "Ready",
                        );
                        if ready != Some("Unknown") {
                            continue;
                        }
                        let status = json!({"status": SimNodes::node_status(&config, index, &time::now())});
                        record("node-status", client.merge_patch_status::<Node>("", node.name(), &status).await).await;
                    }
                }
                .into_actor(self),
            );
        }

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

        // Pods: one informer for all nodes, and a work queue (as each node's kubelet would work
        // in parallel, many pods are handled at once; one pod never twice at once).
        let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new("sim-nodes");
        let pods = self.pods.clone();
        let feed = {
            let (queue, pods, shared, timers) = (queue.clone(), pods.clone(), self.shared.clone(), self.timers.clone());
            async move {
                let mut changes = pods.subscribe();
                pods.wait_synced().await;
                pods.keys().into_iter().for_each(|k| queue.add(k));
                loop {
                    match changes.recv().await {
                        Ok(Change::Applied { new, .. }) => queue.add(new.key()),
                        // A deleted pod's run goes with it.
                        Ok(Change::Deleted(pod)) => shared.lock().expect("sim lock").forget_run(&timers, pod.uid()),
                        Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            // Deletions may have been missed: keep only the runs of pods that exist.
                            let mut s = shared.lock().expect("sim lock");
                            let gone: Vec<String> = s
                                .runs
                                .iter()
                                .filter(|(uid, run)| pods.get_key(&run.key).is_none_or(|p| p.uid() != uid.as_str()))
                                .map(|(uid, _)| uid.clone())
                                .collect();
                            gone.iter().for_each(|uid| s.forget_run(&timers, uid));
                            drop(s);
                            pods.keys().into_iter().for_each(|k| queue.add(k))
                        }
                        Err(_) => return,
                    }
                }
            }
        };
        ctx.spawn(feed.into_actor(self));
        // Runs that ended: their pods go through the work queue like any other change.
        let ended = {
            let (queue, shared, timers) = (queue.clone(), self.shared.clone(), self.timers.clone());
            async move {
                loop {
                    let due = timers.next().await;
                    let keys: Vec<ObjectKey> = {
                        let s = shared.lock().expect("sim lock");
                        due.iter().filter_map(|uid| s.runs.get(uid).map(|r| r.key.clone())).collect()
                    };
                    keys.into_iter().for_each(|k| queue.add(k));
                }
            }
        };
        ctx.spawn(ended.into_actor(self));
        let kubelets = Arc::new(SimKubelets {
            client: self.client.clone(),
            shared: self.shared.clone(),
            timers: self.timers.clone(),
            pods,
        });
        for worker in run_workers("sim-nodes", queue, kubelets, self.config.concurrency) {
            ctx.spawn(worker.into_actor(self));
        }
    }
}

impl Supervised for SimNodes {}

impl Handler<StopNode> for SimNodes {
    type Result = bool;
    fn handle(&mut self, msg: StopNode, _: &mut Self::Context) -> bool {
        let mut s = self.shared.lock().expect("sim lock");
        if !s.nodes.contains_key(&msg.0) || !s.stopped.insert(msg.0.clone()) {
            return false;
        }
        // Its pods' runs never end: a lost node reports nothing more.
        let lost: Vec<String> = s.runs.iter().filter(|(_, r)| r.node == msg.0).map(|(uid, _)| uid.clone()).collect();
        lost.iter().for_each(|uid| s.forget_run(&self.timers, uid));
        true
    }
}

async fn renew_lease(client: &Client, node: &str, period: Duration) {
    let r = node_lease::renew(client, node, (period.as_secs() * 4).max(4)).await;
    record("lease", r).await;
}

/// The simulated nodes' kubelets, as one reconciler of pods by key.
struct SimKubelets {
    client: Client,
    shared: Arc<Mutex<Shared>>,
    timers: Arc<Timers<String>>,
    pods: Informer<Pod>,
}

impl Reconciler for SimKubelets {
    type Error = std::convert::Infallible;
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Self::Error> {
        if let Some(pod) = self.pods.get_key(key) {
            self.handle_pod(&pod).await;
        }
        Ok(Action::Done)
    }
}

/// What a simulated kubelet does next with one pod.
enum Step {
    /// Containers "stopped": the kubelet's final delete with no grace period.
    Delete,
    /// Start it: Running and Ready with this pod IP and host IP.
    Start(String, String),
    /// Its run ended: terminated, or (OnFailure, non-zero exit) restarted.
    End(Run),
}

impl SimKubelets {
    /// What the kubelet of a simulated node does with one pod.
    async fn handle_pod(&self, pod: &Pod) {
        let Some(node) = podutil::node_name(pod) else {
            return;
        };
        let (ns, name, uid) = (pod.namespace(), pod.name(), pod.uid());
        let step = {
            let mut s = self.shared.lock().expect("sim lock");
            let Some(&i) = s.nodes.get(node) else { return };
            if s.stopped.contains(node) {
                return;
            }
            if pod.is_deleting() {
                s.forget_run(&self.timers, uid);
                Step::Delete
            } else {
                match (podutil::phase(pod), RunPlan::of(pod)) {
                    // Started already: this view predates the Running status written.
                    ("Pending", _) if s.runs.contains_key(uid) => return,
                    ("Pending", _) => {
                        let n = s.next_ip.entry(node.to_string()).or_insert(0);
                        *n += 1;
                        Step::Start(pod_ip(i, *n), node_ip(i))
                    }
                    ("Running", Some(plan)) => match s.runs.get(uid) {
                        // Running before this process saw it: the run goes on from its status.
                        None => {
                            self.track(&mut s, uid, Run::resume(pod, node, plan));
                            return;
                        }
                        Some(run) if run.finished || tokio::time::Instant::now() < run.ends => return,
                        Some(run) => Step::End(run.clone()),
                    },
                    // Ended (as the informer now shows), or runs until deleted.
                    _ => {
                        s.forget_run(&self.timers, uid);
                        return;
                    }
                }
            }
        };
        let client = &self.client;
        match step {
            Step::Delete => {
                record("pod-delete", client.delete::<Pod>(ns, name, &DeleteParams::grace_period(0)).await).await;
            }
            Step::Start(pod_ip, host_ip) => {
                let now = time::now();
                let status = json!({ "status": running_status(pod, pod_ip, host_ip, &now) });
                if record("pod-status", client.merge_patch_status::<Pod>(ns, name, &status).await).await.is_some() {
                    if let Some(plan) = RunPlan::of(pod) {
                        let mut s = self.shared.lock().expect("sim lock");
                        self.track(&mut s, uid, Run::start(pod, node, plan, now));
                    }
                }
            }
            Step::End(mut run) => {
                let now = time::now();
                let status = if run.plan.restarts() {
                    runs::restarted_status(pod, &run, &now)
                } else {
                    runs::finished_status(pod, &run, &now)
                };
                let written = client.merge_patch_status::<Pod>(ns, name, &json!({ "status": status })).await;
                let not_found = written.as_ref().is_err_and(|e| e.is_not_found());
                let ok = record("pod-status", written).await.is_some();
                let mut s = self.shared.lock().expect("sim lock");
                // Gone meanwhile (its deletion event drops the run too), or its node stopped.
                if not_found || !s.runs.contains_key(uid) {
                    s.forget_run(&self.timers, uid);
                    return;
                }
                if !ok {
                    // Tried again shortly, as a kubelet retries its status updates.
                    run.ends = tokio::time::Instant::now() + Duration::from_secs(1);
                } else if run.plan.restarts() {
                    run.restarts += 1;
                    run.started_at = now;
                    run.ends = tokio::time::Instant::now() + run.plan.run_for;
                } else {
                    run.finished = true;
                }
                self.track(&mut s, uid, run);
            }
        }
    }

    /// Keeps a pod's run (and its timer, unless it finished). A pod deleted while its status
    /// was being written may already be out of the informer, its deletion event handled
    /// before the run was kept: then the run goes at once rather than wait for a resync.
    fn track(&self, s: &mut Shared, uid: &str, run: Run) {
        let key = run.key.clone();
        if !run.finished {
            self.timers.set(uid.to_string(), run.ends);
        }
        s.runs.insert(uid.to_string(), run);
        if self.pods.get_key(&key).is_none_or(|p| p.uid() != uid) {
            s.forget_run(&self.timers, uid);
        }
    }
}

/// The status of a pod whose containers all started `now` and are ready.
fn running_status(pod: &Pod, pod_ip: String, host_ip: String, now: &Time) -> PodStatus {
    let cond = |type_: &str| PodCondition {
        type_: type_.into(),
        status: "True".into(),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    };
    let (ns, name) = (pod.namespace(), pod.name());
    let statuses = podutil::spec(pod)
        .containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            ready: true,
            started: Some(true),
            restart_count: 0,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(now.clone()) }),
                ..Default::default()
            }),
            container_id: Some(format!("sim://{ns}/{name}/{}", c.name)),
            ..Default::default()
        })
        .collect();
    PodStatus {
        phase: Some("Running".into()),
        pod_ips: Some(vec![PodIP { ip: pod_ip.clone() }]),
        pod_ip: Some(pod_ip),
        host_ips: Some(vec![HostIP { ip: host_ip.clone() }]),
        host_ip: Some(host_ip),
        start_time: Some(now.clone()),
        container_statuses: Some(statuses),
        conditions: Some(
            ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
                .into_iter()
                .map(cond)
                .collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON a simulated node writes is what it wrote before it was typed (the same API
    /// requests), with every timestamp `now`.
    #[test]
    fn node_is_registered_with_capacity_and_ready_conditions() {
        let now = time::now();
        let at = serde_json::to_value(&now).unwrap();
        let config = SimConfig::default();
        let node = serde_json::to_value(SimNodes::node_object("sim-4", 4)).unwrap();
        assert_eq!(
            node,
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "sim-4", "labels": {
                    "kubernetes.io/hostname": "sim-4", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": "zone-b", "type": "kubus-sim"},
                    "annotations": {"kubus.io/simulated": "true"}},
                "spec": {"podCIDR": "10.128.4.0/24", "podCIDRs": ["10.128.4.0/24"]}})
        );
        let cond = |t: &str, s: &str, reason: &str, msg: &str| json!({"type": t, "status": s, "reason": reason, "message": msg, "lastHeartbeatTime": at, "lastTransitionTime": at});
        let capacity = json!({"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"});
        assert_eq!(
            serde_json::to_value(SimNodes::node_status(&config, 4, &now)).unwrap(),
            json!({
                "capacity": capacity, "allocatable": capacity,
                "conditions": [
                    cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [{"type": "InternalIP", "address": "172.16.0.5"}, {"type": "Hostname", "address": "sim-4"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0-kubus-sim", "kubeProxyVersion": "v1.32.0-kubus-sim",
                    "osImage": "Kubus simulated node", "kernelVersion": "sim", "containerRuntimeVersion": "kubus-sim://0.1",
                    "operatingSystem": "linux", "architecture": "amd64", "machineID": "", "systemUUID": "", "bootID": ""},
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            })
        );
    }

    #[test]
    fn bound_pod_becomes_running_and_ready() {
        let now = time::now();
        let at = serde_json::to_value(&now).unwrap();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "web-1"},
            "spec": {"nodeName": "sim-0", "containers": [{"name": "web", "image": "nginx"}, {"name": "side"}]}}))
        .unwrap();
        let status = running_status(&pod, pod_ip(0, 1), node_ip(0), &now);
        let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": at});
        let container = |name: &str, image: &str| {
            json!({"name": name, "image": image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": at}}, "containerID": format!("sim://ns/web-1/{name}")})
        };
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!({"phase": "Running", "podIP": "10.128.0.3", "podIPs": [{"ip": "10.128.0.3"}],
                "hostIP": "172.16.0.1", "hostIPs": [{"ip": "172.16.0.1"}], "startTime": at,
                "containerStatuses": [container("web", "nginx"), container("side", "")],
                "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"),
                    cond("ContainersReady"), cond("PodScheduled")]})
        );
    }

    #[test]
    fn addresses_are_unique_per_node() {
        assert_eq!((pod_cidr(0), pod_cidr(257)), ("10.128.0.0/24".to_string(), "10.129.1.0/24".to_string()));
        assert_eq!((node_ip(0), node_ip(256)), ("172.16.0.1".to_string(), "172.16.1.1".to_string()));
        assert_eq!(pod_ip(257, 250), "10.129.1.2");
    }
}
