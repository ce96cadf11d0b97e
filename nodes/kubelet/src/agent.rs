//! The agent actor: opens the node's runtime, images and state, starts the heartbeat and the
//! stream server, hands each pod bound to the node to a [`PodWorker`] of its own (adopting
//! containers that survived a restart) and sweeps what no pod owns any more.

use crate::config::KubeletConfig;
use crate::context::{NodeContext, PodHandle};
use crate::host::adapters::{ApiServer, NetworkSandboxes};
use crate::host::{Host, ServiceLookup};
use crate::pod_worker::{PodWorker, WorkerMsg};
use crate::{node, KubeletError, LABEL_POD_UID};
use actix::prelude::*;
use k8s_openapi::api::core::v1::{Pod, Service};
use kubus_apimachinery::{pod, ObjectExt};
use kubus_container_runtime::ContainerInfo;
use kubus_controller_runtime::informer::indexes;
use kubus_controller_runtime::{Change, Client, Informer};
use prometheus::{register_int_gauge, IntGauge};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

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

/// How often the agent looks for pods that vanished while it was not looking.
const SWEEP_PERIOD: Duration = Duration::from_secs(30);

/// The agent actor.
pub struct Kubelet {
    ctx: Arc<NodeContext>,
    pods: Informer<Pod>,
    workers: HashMap<String, mpsc::UnboundedSender<WorkerMsg>>,
    /// Containers found at start, by pod uid, until their pod's worker takes them.
    adoptable: HashMap<String, Vec<ContainerInfo>>,
    /// Reads the usage of what runs here (usage reports, /metrics).
    sampler: Arc<crate::stats::Sampler>,
}

impl Kubelet {
    /// Opens the node's runtime, image store and state; the actor registers the node once
    /// started. `pods` is an informer of this node's pods (`kubus node`: selected by
    /// `spec.nodeName`) or of every pod (`kubus up`, shared with the controllers); either way
    /// the agent reads this node's through an index, never the whole cache. `services` gives
    /// pods their Service variables and the cluster DNS.
    pub async fn new(
        config: KubeletConfig,
        client: Client,
        nats: async_nats::Client,
        pods: Informer<Pod>,
        services: Option<Informer<Service>>,
    ) -> Result<Kubelet, KubeletError> {
        std::fs::create_dir_all(&config.state_dir)?;
        std::fs::create_dir_all(&config.log_dir)?;
        let runtime = Arc::new(kubus_container_runtime::Runtime::new(kubus_container_runtime::RuntimeConfig {
            shim_command: config.shim_command.clone(),
            state_dir: config.state_dir.join("runtime"),
            runc_root: config.state_dir.join("runc"),
            cgroup_root: config.cgroup_root.clone(),
        })?);
        let images = crate::image_gc::open_store(&config)?;
        let machine = node::Machine::probe(&config.state_dir);
        let cgroups = kubus_container_runtime::cgroups::CgroupLayout::detect()?;
        let cgroup_v2 = cgroups.version == kubus_container_runtime::cgroups::CgroupVersion::V2;
        let fs_layout =
            crate::stats::fs::FsLayout { state_dir: config.state_dir.clone(), log_dir: config.log_dir.clone() };
        let sampler = Arc::new(crate::stats::Sampler::new(cgroups.clone(), &config.cgroup_root, fs_layout));
        let node_ip = config.node_ip.unwrap_or_else(node::default_node_ip);
        let recorder = kubus_controller_runtime::events::Recorder::new(client.clone(), "kubelet");
        let sandboxes = NetworkSandboxes::default();
        indexes::pods_by_node(&pods);
        let host = Arc::new(Host {
            services: ServiceLookup { services, cluster_dns: config.cluster_dns },
            config,
            machine,
            node_ip,
            cgroup_v2,
            runtime: runtime.clone(),
            sandboxes: Arc::new(sandboxes.clone()),
            images: Arc::new(images.clone()),
            cgroups: Arc::new(cgroups),
            api: Arc::new(ApiServer { client: client.clone(), recorder }),
            objects: Arc::new(client.clone()),
            tokens: Arc::new(client.clone()),
            startup_latency: Default::default(),
        });
        let ctx = Arc::new(NodeContext {
            host,
            client,
            nats,
            runtime,
            images,
            network: sandboxes.network,
            pods: RwLock::new(HashMap::new()),
        });
        Ok(Kubelet { ctx, pods, workers: HashMap::new(), adoptable: HashMap::new(), sampler })
    }

    pub fn context(&self) -> Arc<NodeContext> {
        self.ctx.clone()
    }

    fn mine(&self, pod: &Pod) -> bool {
        pod::node_name(pod) == Some(self.ctx.config().node_name.as_str())
    }

    /// This node's pods, from the informer's index.
    fn my_pods(&self) -> Vec<Arc<Pod>> {
        self.pods.by_index(indexes::POD_NODE_NAME, &self.ctx.config().node_name)
    }

    fn dispatch(&mut self, pod: Arc<Pod>, ctx: &mut Context<Self>) {
        let uid = pod.uid().to_string();
        if !self.mine(&pod) {
            self.ctx.host.startup_latency.forget(&uid);
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
        let adopt = self.adoptable.remove(&uid).unwrap_or_default();
        if pod::is_terminal(&pod) && adopt.is_empty() && !pod.is_deleting() {
            return;
        }
        let key = pod.key();
        let handle = Arc::new(PodHandle::default());
        self.ctx.pods.write().expect("pods lock").insert(key.clone(), handle.clone());
        let (mut worker, tx) = PodWorker::new(self.ctx.host.clone(), pod, handle.clone());
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

    /// Workers whose pod is gone; sandboxes and containers no pod owns.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let live: HashSet<String> = self.my_pods().iter().map(|p| p.uid().to_string()).collect();
        for (uid, tx) in &self.workers {
            if !live.contains(uid) {
                let _ = tx.send(WorkerMsg::Removed);
            }
        }
        let working: HashSet<String> = self.workers.keys().cloned().collect();
        let host = self.ctx.host.clone();
        ctx.spawn(
            async move {
                let owned = |uid: &str| live.contains(uid) || working.contains(uid);
                let mut orphans: HashSet<String> = HashSet::new();
                for (id, labels) in host.runtime.list_labels().await.unwrap_or_default() {
                    let uid = labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
                    if !owned(&uid) {
                        tracing::info!(container = %id, pod_uid = %uid, "removing a container no pod owns");
                        let _ = host.runtime.kill(&id, 9, true).await;
                        let _ = host.runtime.remove(&id).await;
                        orphans.insert(uid);
                    }
                }
                orphans.extend(host.sandboxes.list().await.into_iter().filter(|uid| !owned(uid)));
                for e in std::fs::read_dir(host.config.state_dir.join("pods")).into_iter().flatten().flatten() {
                    let uid = e.file_name().to_string_lossy().into_owned();
                    if !owned(&uid) {
                        orphans.insert(uid);
                    }
                }
                for uid in orphans {
                    if let Err(e) = host.cleanup_pod(&uid, None).await {
                        tracing::warn!(pod_uid = %uid, error = %e, "orphaned pod cleanup incomplete");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

/// A change of the node's pods, with when the watch delivered it.
#[derive(Message)]
#[rtype(result = "()")]
struct PodChanged(Change<Pod>, SystemTime);

#[derive(Message)]
#[rtype(result = "()")]
struct WorkerDone(String);

#[derive(Message)]
#[rtype(result = "()")]
struct Adopted(HashMap<String, Vec<ContainerInfo>>);

impl Actor for Kubelet {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let c = self.ctx.clone();
        let addr = ctx.address();
        tracing::info!(node = %c.config().node_name, ip = %c.host.node_ip, "node agent starting");
        // Register, then keep the Lease and the status fresh.
        ctx.spawn(crate::heartbeat::register_and_heartbeat(c).into_actor(self));
        // Containers that survived a restart, then the pods.
        let (c, pods) = (self.ctx.clone(), self.pods.clone());
        ctx.spawn(
            async move {
                let found = match c.host.runtime.list().await {
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
                addr.do_send(PodChanged(Change::Resynced, SystemTime::now()));
                loop {
                    match changes.recv().await {
                        Ok(ch) => addr.do_send(PodChanged(ch, SystemTime::now())),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            addr.do_send(PodChanged(Change::Resynced, SystemTime::now()))
                        }
                        Err(_) => return,
                    }
                }
            }
            .into_actor(self),
        );
        // Serve logs, exec and port-forward for the API server.
        let handler = Arc::new(crate::streams::NodeStreamHandler::new(self.ctx.clone()));
        let nats = self.ctx.nats.clone();
        let (cluster, node) = (self.ctx.config().cluster.clone(), self.ctx.config().node_name.clone());
        ctx.spawn(
            async move {
                if let Err(e) = kubus_bus::stream::serve_node_streams(nats, &cluster, &node, handler).await {
                    tracing::error!(error = %e, "node stream server stopped");
                }
            }
            .into_actor(self),
        );
        crate::pod_startup_latency::PodStartupLatencyTracker::register_metrics();
        // Resource usage: reports to the API servers, and cAdvisor's series on /metrics (unless
        // collection is off).
        let interval = self.ctx.config().housekeeping_interval;
        if interval.is_zero() {
            tracing::info!("usage collection is off (--housekeeping-interval 0)");
            crate::stats::cadvisor::expose(&self.ctx, None);
        } else {
            crate::stats::cadvisor::expose(&self.ctx, Some(self.sampler.clone()));
            let housekeeping = crate::stats::reporter::run(self.ctx.clone(), self.sampler.clone(), interval);
            ctx.spawn(housekeeping.into_actor(self));
        }
        // Now and then: pods that vanished while this agent was not looking.
        ctx.run_interval(SWEEP_PERIOD, |act, ctx| act.sweep(ctx));
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
            Change::Applied { new, .. } => {
                // The pod startup SLI ends when a watch shows the pod's containers started.
                if self.mine(&new) {
                    self.ctx.host.startup_latency.observed_on_watch(&new, msg.1);
                }
                self.dispatch(new, ctx)
            }
            Change::Deleted(pod) => {
                self.ctx.host.startup_latency.forget(pod.uid());
                if let Some(tx) = self.workers.get(pod.uid()) {
                    let _ = tx.send(WorkerMsg::Removed);
                }
            }
            Change::Resynced => {
                for p in self.my_pods() {
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
        if let Some(p) = self.my_pods().into_iter().find(|p| p.uid() == msg.0) {
            if pod::is_active(&p) {
                self.dispatch(p, ctx);
            }
        }
    }
}
