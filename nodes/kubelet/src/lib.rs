//! The node agent (kubelet) of Kubus: registers its node with the machine's capacity, renews
//! its Lease, and runs the pods bound to it as real Linux containers: one [`pod_worker`] per
//! pod drives its sandbox (network namespace, CNI), volumes and containers (through shims
//! around youki's libcontainer) and reports their status. Containers outlive the agent; a
//! restarted agent adopts them. Logs, exec and port-forward are served over the bus to the
//! API server ([`streams`]).

pub mod backoff;
pub mod env;
pub mod node;
pub mod objects;
pub mod pod_worker;
pub mod probes;
pub mod reset;
pub mod routes;
pub mod spec;
pub mod status;
pub mod streams;
pub mod volumes;

pub use reset::reset;

use actix::prelude::*;
use kubus_runtime::{Change, Client, Informer};
use pod_worker::{PodWorker, WorkerMsg};
use prometheus::{register_int_gauge, IntGauge};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

// The runtime's labels: adoption after a restart reads what the shims recorded.
pub use kubus_node_runtime::labels::{
    CONTAINER_NAME as LABEL_CONTAINER, POD_NAME as LABEL_POD_NAME, POD_NAMESPACE as LABEL_POD_NAMESPACE,
    POD_UID as LABEL_POD_UID, RESTART_COUNT as LABEL_ATTEMPT,
};
pub const LABEL_IMAGE: &str = "io.kubus.image";
pub const LABEL_IMAGE_ID: &str = "io.kubus.image.id";
pub const LABEL_INIT: &str = "io.kubus.init";

static WORKER_PANICS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "kubus_kubelet_pod_worker_panics_total",
        "Pod workers that panicked (and were replaced)"
    )
    .expect("registers once")
});
static PODS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kubus_kubelet_running_pods", "Pods with a worker on this node").expect("registers once")
});

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    /// Where pods, shims, images and sandboxes keep their state.
    pub state_dir: PathBuf,
    /// Container logs (`<ns>_<pod>_<uid>/<container>/<n>.log`), like /var/log/pods.
    pub log_dir: PathBuf,
    /// How to start a shim: the kubus binary and `shim`.
    pub shim_command: Vec<std::ffi::OsString>,
    /// Parent cgroup of every pod (cgroupfs layout, like kubelet's `/kubepods`).
    pub cgroup_root: String,
    pub cluster: String,
    pub node_ip: Option<IpAddr>,
    /// k3s-style registries.yaml (mirrors, auth).
    pub registries: Option<PathBuf>,
    /// A pod CIDR for this node; otherwise the controller manager assigns one.
    pub pod_cidr: Option<String>,
    /// Linux bridge the pods attach to.
    pub bridge: String,
    /// The cluster's pod range (traffic to it is not masqueraded).
    pub cluster_cidr: Option<String>,
    /// The cluster DNS Service's address, for pods with dnsPolicy ClusterFirst (kubelet's
    /// --cluster-dns); None: pods use the node's resolvers.
    pub cluster_dns: Option<IpAddr>,
    /// kubelet's --cluster-domain.
    pub cluster_domain: String,
    pub lease_duration: Duration,
    pub max_pods: u32,
    pub labels: Vec<(String, String)>,
    /// Image files (OCI archives, docker-save tarballs) imported at start.
    pub import_dir: Option<PathBuf>,
    /// Build the `busybox` image from the host's busybox-static when it is missing.
    pub busybox: Option<PathBuf>,
}

impl KubeletConfig {
    pub fn new(node_name: &str, state_dir: PathBuf, shim_command: Vec<std::ffi::OsString>) -> Self {
        KubeletConfig {
            node_name: node_name.to_string(),
            log_dir: PathBuf::from("/var/log/pods"),
            state_dir,
            shim_command,
            cgroup_root: "/kubus".into(),
            cluster: "kubus".into(),
            node_ip: None,
            registries: None,
            pod_cidr: None,
            bridge: "kubus0".into(),
            cluster_cidr: None,
            cluster_dns: None,
            cluster_domain: "cluster.local".into(),
            lease_duration: Duration::from_secs(40),
            max_pods: 110,
            labels: vec![],
            import_dir: None,
            busybox: Some(PathBuf::from("/bin/busybox")),
        }
    }
}

/// What the streaming side (logs, exec, port-forward) needs to know about a pod.
#[derive(Default)]
pub struct PodHandle {
    inner: Mutex<PodHandleInner>,
}

#[derive(Default, Clone)]
pub struct PodHandleInner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub ips: Vec<String>,
    /// container -> (current run id, attempt, running)
    pub containers: HashMap<String, (String, u32, bool)>,
}

impl PodHandle {
    fn update(&self, pod: &Value, ips: &[String], runs: Vec<(String, String, u32, bool)>) {
        let mut g = self.inner.lock().expect("pod handle lock");
        g.namespace = pod["metadata"]["namespace"].as_str().unwrap_or("").into();
        g.name = pod["metadata"]["name"].as_str().unwrap_or("").into();
        g.uid = pod["metadata"]["uid"].as_str().unwrap_or("").into();
        g.ips = ips.to_vec();
        g.containers = runs.into_iter().map(|(n, id, a, r)| (n, (id, a, r))).collect();
    }
    fn clear(&self) {
        self.inner.lock().expect("pod handle lock").containers.clear();
    }
    pub fn snapshot(&self) -> PodHandleInner {
        self.inner.lock().expect("pod handle lock").clone()
    }
}

/// Shared by the agent, its pod workers and its stream server.
pub struct NodeContext {
    pub config: KubeletConfig,
    pub client: Client,
    /// The bus connection (node streams are served on it).
    pub nats: async_nats::Client,
    pub recorder: kubus_runtime::events::Recorder,
    pub runtime: Arc<kubus_node_runtime::Runtime>,
    pub images: kubus_image::ImageStore,
    pub network: tokio::sync::RwLock<Option<kubus_node_network::SandboxManager>>,
    pub machine: node::Machine,
    pub cgroups: kubus_node_runtime::cgroups::CgroupLayout,
    pub node_ip: IpAddr,
    /// (namespace, name) -> handle of the pod's worker.
    pub pods: RwLock<HashMap<(String, String), Arc<PodHandle>>>,
    services: Option<Informer>,
}

impl NodeContext {
    pub async fn network(&self) -> Option<kubus_node_network::SandboxManager> {
        self.network.read().await.clone()
    }

    /// The pod's cgroup, below the node's cgroup root by QoS class.
    pub fn pod_cgroup(&self, uid: &str, qos: spec::QosClass) -> String {
        kubus_node_runtime::cgroups::pod_cgroup_path(&self.config.cgroup_root, qos, uid)
    }

    pub fn allocatable(&self) -> Value {
        json!({"cpu": self.machine.cpus.to_string(), "memory": self.machine.memory_bytes.to_string()})
    }

    /// The cluster DNS for pods' resolv.conf: `--cluster-dns`, else the ClusterIP of
    /// kube-system/kube-dns (so an agent joining with only a NATS URL finds it).
    pub fn cluster_dns(&self) -> Option<IpAddr> {
        self.config.cluster_dns.or_else(|| {
            let svc = self.services.as_ref()?.get("kube-system", "kube-dns")?;
            svc["spec"]["clusterIP"].as_str()?.parse().ok()
        })
    }

    /// Docker-link style variables of the namespace's Services (enableServiceLinks) and the
    /// `kubernetes` Service's, as upstream sets them.
    pub async fn service_env(&self, ns: &str, pod: &Value) -> Vec<(String, String)> {
        let Some(services) = &self.services else { return vec![] };
        let links = pod["spec"]["enableServiceLinks"].as_bool().unwrap_or(true);
        let mut out = vec![];
        for svc in services.list() {
            let sns = svc["metadata"]["namespace"].as_str().unwrap_or("");
            let name = svc["metadata"]["name"].as_str().unwrap_or("");
            let master = sns == "default" && name == "kubernetes";
            if !(master || (links && sns == ns)) {
                continue;
            }
            let Some(ip) = svc["spec"]["clusterIP"].as_str().filter(|ip| *ip != "None" && !ip.is_empty()) else {
                continue;
            };
            let prefix = name.to_uppercase().replace('-', "_");
            let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
            out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
            if let Some(p) = ports.first() {
                out.push((format!("{prefix}_SERVICE_PORT"), p["port"].to_string()));
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                out.push((format!("{prefix}_PORT"), format!("{}://{ip}:{}", proto.to_lowercase(), p["port"])));
            }
            for p in &ports {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                if let Some(pn) = p["name"].as_str().filter(|n| !n.is_empty()) {
                    out.push((
                        format!("{prefix}_SERVICE_PORT_{}", pn.to_uppercase().replace('-', "_")),
                        p["port"].to_string(),
                    ));
                }
                let base = format!("{prefix}_PORT_{}_{}", p["port"], proto.to_uppercase());
                out.push((base.clone(), format!("{}://{ip}:{}", proto.to_lowercase(), p["port"])));
                out.push((format!("{base}_PROTO"), proto.to_lowercase()));
                out.push((format!("{base}_PORT"), p["port"].to_string()));
                out.push((format!("{base}_ADDR"), ip.to_string()));
            }
        }
        out
    }
}

/// The agent actor.
pub struct Kubelet {
    ctx: Arc<NodeContext>,
    pods: Informer,
    workers: HashMap<String, mpsc::UnboundedSender<WorkerMsg>>,
    /// Containers found at start, by pod uid, until their pod's worker takes them.
    adoptable: HashMap<String, Vec<kubus_node_runtime::ContainerInfo>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("container runtime: {0}")]
    Runtime(#[from] kubus_node_runtime::RuntimeError),
    #[error("cgroups: {0}")]
    Cgroups(#[from] kubus_node_runtime::cgroups::CgroupError),
    #[error("image store: {0}")]
    Image(#[from] kubus_image::ImageError),
    #[error("registries: {0}")]
    Registries(#[from] kubus_image::RegistriesError),
    #[error("pod network: {0}")]
    Network(#[from] kubus_node_network::NetworkError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Kubelet {
    /// Opens the node's runtime, image store and state; the actor registers the node once
    /// started. `pods` and `services` are informers (all pods; this node's are picked).
    pub async fn new(
        config: KubeletConfig,
        client: Client,
        nats: async_nats::Client,
        pods: Informer,
        services: Option<Informer>,
    ) -> Result<Kubelet, KubeletError> {
        std::fs::create_dir_all(&config.state_dir)?;
        std::fs::create_dir_all(&config.log_dir)?;
        let runtime = Arc::new(kubus_node_runtime::Runtime::new(kubus_node_runtime::RuntimeConfig {
            shim_command: config.shim_command.clone(),
            state_dir: config.state_dir.join("runtime"),
            runc_root: config.state_dir.join("runc"),
            cgroup_root: config.cgroup_root.clone(),
        })?);
        let registries = match &config.registries {
            Some(p) => kubus_image::Registries::load(p)?,
            None => kubus_image::Registries::default(),
        };
        let images = kubus_image::ImageStore::open(config.state_dir.join("images"), registries)?;
        if let Some(bb) = config.busybox.as_ref().filter(|p| p.exists()) {
            if images.get("busybox").is_none() {
                let img = images.install_busybox(bb)?;
                tracing::info!(id = %img.id, "built the busybox image from {}", bb.display());
            }
        }
        if let Some(dir) = &config.import_dir {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "tar") {
                    match images.import(&p) {
                        Ok(names) => tracing::info!(file = %p.display(), ?names, "imported images"),
                        Err(err) => tracing::warn!(file = %p.display(), error = %err, "image import failed"),
                    }
                }
            }
        }
        let machine = node::Machine::probe(&config.state_dir);
        let cgroups = kubus_node_runtime::cgroups::CgroupLayout::detect()?;
        let node_ip = config.node_ip.unwrap_or_else(node::default_node_ip);
        let recorder = kubus_runtime::events::Recorder::new(client.clone(), "kubelet");
        let ctx = Arc::new(NodeContext {
            config,
            client,
            nats,
            recorder,
            runtime,
            images,
            network: tokio::sync::RwLock::new(None),
            machine,
            cgroups,
            node_ip,
            pods: RwLock::new(HashMap::new()),
            services,
        });
        Ok(Kubelet { ctx, pods, workers: HashMap::new(), adoptable: HashMap::new() })
    }

    pub fn context(&self) -> Arc<NodeContext> {
        self.ctx.clone()
    }

    fn mine(&self, pod: &Value) -> bool {
        pod["spec"]["nodeName"].as_str() == Some(self.ctx.config.node_name.as_str())
    }

    fn dispatch(&mut self, pod: Arc<Value>, ctx: &mut Context<Self>) {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if !self.mine(&pod) {
            if let Some(tx) = self.workers.get(&uid) {
                let _ = tx.send(WorkerMsg::Removed);
            }
            return;
        }
        if let Some(tx) = self.workers.get(&uid) {
            if tx.send(WorkerMsg::Update(pod.clone())).is_ok() {
                return;
            }
        }
        // A pod that finished before this agent started keeps nothing to run.
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        let adopt = self.adoptable.remove(&uid).unwrap_or_default();
        if (phase == "Succeeded" || phase == "Failed")
            && adopt.is_empty()
            && pod["metadata"]["deletionTimestamp"].is_null()
        {
            return;
        }
        let key = (
            pod["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
            pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
        );
        let handle = Arc::new(PodHandle::default());
        self.ctx.pods.write().expect("pods lock").insert(key.clone(), handle.clone());
        let (mut worker, tx) = PodWorker::new(self.ctx.clone(), pod, handle.clone());
        self.workers.insert(uid.clone(), tx);
        PODS.set(self.workers.len() as i64);
        let (addr, ctx2) = (ctx.address(), self.ctx.clone());
        let work = tokio::spawn(async move {
            if !adopt.is_empty() {
                worker.adopt(adopt).await;
            }
            worker.run().await;
        });
        tokio::spawn(async move {
            // A worker that panicked is reported and replaced (WorkerDone re-dispatches a pod
            // still bound here); the agent itself carries on.
            if let Err(e) = work.await {
                if e.is_panic() {
                    WORKER_PANICS.inc();
                    tracing::error!(pod = %format!("{}/{}", key.0, key.1), "pod worker panicked; starting a new one");
                }
            }
            let mut pods = ctx2.pods.write().unwrap_or_else(|p| p.into_inner());
            if pods.get(&key).is_some_and(|h| Arc::ptr_eq(h, &handle)) {
                pods.remove(&key);
            }
            drop(pods);
            addr.do_send(WorkerDone(uid));
        });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct PodChanged(Change);

#[derive(Message)]
#[rtype(result = "()")]
struct WorkerDone(String);

#[derive(Message)]
#[rtype(result = "()")]
struct Adopted(HashMap<String, Vec<kubus_node_runtime::ContainerInfo>>);

impl Actor for Kubelet {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let c = self.ctx.clone();
        let addr = ctx.address();
        tracing::info!(node = %c.config.node_name, ip = %c.node_ip, "node agent starting");
        // Register, then keep the Lease and the status fresh.
        ctx.spawn(
            async move {
                register_and_heartbeat(c).await;
            }
            .into_actor(self),
        );
        // Containers that survived a restart, then the pods.
        let (c, pods) = (self.ctx.clone(), self.pods.clone());
        ctx.spawn(
            async move {
                let found = match c.runtime.list().await {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "listing existing containers failed");
                        vec![]
                    }
                };
                let mut by_pod: HashMap<String, Vec<_>> = HashMap::new();
                for info in found {
                    let uid = info.labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
                    by_pod.entry(uid).or_default().push(info);
                }
                addr.do_send(Adopted(by_pod));
                let mut changes = pods.subscribe();
                pods.wait_synced().await;
                addr.do_send(PodChanged(Change::Resynced));
                loop {
                    match changes.recv().await {
                        Ok(ch) => addr.do_send(PodChanged(ch)),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            addr.do_send(PodChanged(Change::Resynced))
                        }
                        Err(_) => return,
                    }
                }
            }
            .into_actor(self),
        );
        // Serve logs, exec and port-forward for the API server.
        let handler = Arc::new(streams::NodeStreamHandler::new(self.ctx.clone()));
        let nats = self.ctx.nats.clone();
        let (cluster, node) = (self.ctx.config.cluster.clone(), self.ctx.config.node_name.clone());
        ctx.spawn(
            async move {
                if let Err(e) = kubus_bus::stream::serve_node_streams(nats, &cluster, &node, handler).await {
                    tracing::error!(error = %e, "node stream server stopped");
                }
            }
            .into_actor(self),
        );
        // Now and then: pods that vanished while this agent was not looking.
        ctx.run_interval(Duration::from_secs(30), |act, ctx| act.sweep(ctx));
    }
}

impl Kubelet {
    /// Workers whose pod is gone; sandboxes and containers no pod owns.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let live: HashSet<String> = self
            .pods
            .list()
            .iter()
            .filter(|p| self.mine(p))
            .filter_map(|p| p["metadata"]["uid"].as_str().map(String::from))
            .collect();
        for (uid, tx) in &self.workers {
            if !live.contains(uid) {
                let _ = tx.send(WorkerMsg::Removed);
            }
        }
        let working: HashSet<String> = self.workers.keys().cloned().collect();
        let c = self.ctx.clone();
        ctx.spawn(
            async move {
                let mut orphans: HashSet<String> = HashSet::new();
                for (id, labels) in c.runtime.list_labels().await.unwrap_or_default() {
                    let uid = labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
                    if !live.contains(&uid) && !working.contains(&uid) {
                        tracing::info!(container = %id, pod_uid = %uid, "removing a container no pod owns");
                        let _ = c.runtime.kill(&id, 9, true).await;
                        let _ = c.runtime.delete(&id).await;
                        orphans.insert(uid);
                    }
                }
                if let Some(n) = c.network().await {
                    for s in n.list() {
                        if !live.contains(&s.uid) && !working.contains(&s.uid) {
                            orphans.insert(s.uid);
                        }
                    }
                }
                for e in std::fs::read_dir(c.config.state_dir.join("pods")).into_iter().flatten().flatten() {
                    let uid = e.file_name().to_string_lossy().into_owned();
                    if !live.contains(&uid) && !working.contains(&uid) {
                        orphans.insert(uid);
                    }
                }
                for uid in orphans {
                    if let Err(e) = pod_worker::cleanup_pod(&c, &uid, None).await {
                        tracing::warn!(pod_uid = %uid, error = %e, "orphaned pod cleanup incomplete");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<Adopted> for Kubelet {
    type Result = ();
    fn handle(&mut self, msg: Adopted, _: &mut Self::Context) {
        self.adoptable = msg.0;
    }
}

impl Handler<PodChanged> for Kubelet {
    type Result = ();
    fn handle(&mut self, msg: PodChanged, ctx: &mut Self::Context) {
        match msg.0 {
            Change::Applied { new, .. } => self.dispatch(new, ctx),
            Change::Deleted(pod) => {
                let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
                if let Some(tx) = self.workers.get(uid) {
                    let _ = tx.send(WorkerMsg::Removed);
                }
            }
            Change::Resynced => {
                for p in self.pods.list() {
                    self.dispatch(p, ctx);
                }
                self.sweep(ctx);
            }
        }
    }
}

impl Handler<WorkerDone> for Kubelet {
    type Result = ();
    fn handle(&mut self, msg: WorkerDone, ctx: &mut Self::Context) {
        self.workers.remove(&msg.0);
        PODS.set(self.workers.len() as i64);
        // A pod that is still bound here and not finished gets a new worker (e.g. it was
        // recreated with the same name, or a transient error ended its worker).
        if let Some(p) = self.pods.list().into_iter().find(|p| p["metadata"]["uid"] == msg.0.as_str()) {
            if p["metadata"]["deletionTimestamp"].is_null()
                && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            {
                self.dispatch(p, ctx);
            }
        }
    }
}

/// Registers the node (retrying until the API answers), then renews the Lease every quarter
/// of its duration and writes the status when it changes (or every minute).
async fn register_and_heartbeat(c: Arc<NodeContext>) {
    let name = c.config.node_name.clone();
    let mut backoff = Duration::from_millis(200);
    loop {
        let obj = node::node_object(&name, c.machine.arch, &c.config.labels, c.config.pod_cidr.as_deref());
        match c.client.create("", "nodes", None, &obj).await {
            Ok(_) => break,
            Err(e) if e.is_conflict() => break,
            Err(e) => {
                tracing::warn!(error = %e, "node registration failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::info!(node = %name, "node registered");
    let renew = c.config.lease_duration / 4;
    let mut last_gc = std::time::Instant::now();
    let mut last_status = None::<Value>;
    let mut last_write = std::time::Instant::now();
    let mut failed_renewals = 0u32;
    loop {
        let current = c.client.get("", "nodes", None, &name).await.ok();
        // The pod network starts once the node has a pod CIDR.
        let cidr = c.config.pod_cidr.clone().or_else(|| {
            current.as_ref().and_then(|n| n["spec"]["podCIDR"].as_str().filter(|s| !s.is_empty()).map(String::from))
        });
        let mut not_ready = None;
        if c.network.read().await.is_none() {
            match cidr {
                Some(cidr) => {
                    let mut cfg =
                        kubus_node_network::NetworkConfig::new(c.config.state_dir.join("network"), cidr.clone());
                    cfg.bridge = c.config.bridge.clone();
                    cfg.cluster_cidr = c.config.cluster_cidr.clone();
                    // `node-reset` undoes the network with the same configuration after this agent is gone.
                    let saved =
                        json!({"podCIDR": cidr, "clusterCIDR": c.config.cluster_cidr, "bridge": c.config.bridge});
                    let _ = std::fs::write(c.config.state_dir.join(reset::NETWORK_FILE), saved.to_string());
                    match kubus_node_network::SandboxManager::new(cfg) {
                        Ok(m) => {
                            tracing::info!(pod_cidr = %cidr, "pod network ready");
                            *c.network.write().await = Some(m);
                        }
                        Err(e) => not_ready = Some(format!("pod network: {e}")),
                    }
                }
                None => not_ready = Some("network plugin not ready: waiting for a pod CIDR".to_string()),
            }
        }
        match node::renew_lease(&c.client, &name, c.config.lease_duration.as_secs()).await {
            Ok(_) => failed_renewals = 0,
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                failed_renewals += 1;
                // As upstream's kubelet closes its connections after repeated heartbeat
                // failures: a TCP connection that lived through a network cut can sit in
                // retransmission back-off for tens of seconds after the network is back, while
                // a new one connects at once.
                if failed_renewals == 2 {
                    tracing::warn!("lease renewals keep failing: reconnecting to NATS");
                    if let Err(e) = c.nats.force_reconnect().await {
                        tracing::warn!(error = %e, "NATS reconnect failed");
                    }
                }
            }
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
        let images = c.images.list().into_iter().map(|i| (i.names.clone(), i.size)).collect();
        let previous = current.unwrap_or(Value::Null);
        let status = node::node_status(&node::StatusInput {
            name: &name,
            machine: &c.machine,
            max_pods: c.config.max_pods,
            ip: c.node_ip,
            hostname: &hostname,
            images,
            not_ready,
            previous: &previous,
        });
        let changed = last_status.as_ref() != Some(&node::without_times(&status));
        // The node lifecycle controller sets Ready=Unknown while this agent was unreachable:
        // the agent's own view is written back as soon as it can reach the API again.
        let overwritten = !previous.is_null()
            && kubus_apimachinery::conditions::status(&previous, "Ready")
                != kubus_apimachinery::conditions::status(&status, "Ready");
        if changed || overwritten || last_write.elapsed() >= Duration::from_secs(60) {
            match c.client.merge_patch("", "nodes", None, &name, Some("status"), &status).await {
                Ok(_) => {
                    last_status = Some(node::without_times(&status));
                    last_write = std::time::Instant::now();
                }
                Err(e) if e.is_not_found() => {
                    // Someone deleted the node: register again.
                    let obj = node::node_object(&name, c.machine.arch, &c.config.labels, c.config.pod_cidr.as_deref());
                    let _ = c.client.create("", "nodes", None, &obj).await;
                    last_status = None;
                }
                Err(e) => tracing::warn!(error = %e, "node status update failed"),
            }
        }
        if last_gc.elapsed() >= Duration::from_secs(300) {
            last_gc = std::time::Instant::now();
            image_gc(&c).await;
        }
        tokio::time::sleep(if c.network.read().await.is_none() { Duration::from_secs(1) } else { renew }).await;
    }
}

/// Upstream's image GC policy: above 85% disk use, unused images go (least recently used
/// first) until use is back under 80%.
async fn image_gc(c: &NodeContext) {
    let Ok(fs) = nix::sys::statvfs::statvfs(c.images.root()) else { return };
    let capacity = fs.blocks() * fs.fragment_size();
    let used = capacity.saturating_sub(fs.blocks_available() * fs.fragment_size());
    if capacity == 0 || used * 100 < capacity * 85 {
        return;
    }
    let store = c.images.store_bytes();
    let high = store.saturating_sub(used.saturating_sub(capacity * 85 / 100));
    let low = store.saturating_sub(used.saturating_sub(capacity * 80 / 100));
    let in_use: HashSet<String> = c
        .runtime
        .list_labels()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, labels)| labels.get(LABEL_IMAGE).and_then(|n| c.images.get(n)).map(|img| img.id))
        .collect();
    match c.images.gc(&in_use, high, low) {
        Ok(r) => tracing::info!(
            removed = r.images_removed.len(),
            bytes_before = r.bytes_before,
            bytes_after = r.bytes_after,
            "image garbage collection"
        ),
        Err(e) => tracing::warn!(error = %e, "image garbage collection failed"),
    }
}
