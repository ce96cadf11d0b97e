//! The controller manager: each controller is a reconciler on the shared runtime's
//! [`Controller`](kubus_controller_runtime::Controller) builder (typed informers from the
//! process's factory, a work queue, writes through the API server), started together by
//! [`ControllerManager`].
#![forbid(unsafe_code)]

pub mod adoption;
pub mod clusterroleaggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod podautoscaler;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod statefulset;
pub mod ttlafterfinished;

use actix::prelude::*;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ReplicationController;
use kubus_controller_runtime::{Client, InformerFactory};

/// The controller manager actor: elects itself leader, then runs every controller on a thread
/// of its own (so a busy controller never delays another's reconciles), each with its own
/// rate-limited API client; losing leadership, or a supervisor restart, stops them all. The
/// informers are the process's, shared.
pub struct ControllerManager {
    informers: InformerFactory,
    client: Client,
    config: ControllerConfig,
    /// Leader election (None: this controller manager is the only one).
    leader: Option<kubus_controller_runtime::leader::LeaderConfig>,
    /// The controllers' threads while leading.
    threads: Vec<Arbiter>,
}

impl ControllerManager {
    pub fn new(
        informers: InformerFactory,
        client: Client,
        config: ControllerConfig,
        leader: Option<kubus_controller_runtime::leader::LeaderConfig>,
    ) -> Self {
        ControllerManager { informers, client, config, leader, threads: Vec::new() }
    }
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How long a node may go without renewing its Lease before it is NotReady (upstream's
    /// --node-monitor-grace-period).
    pub node_monitor_grace_period: std::time::Duration,
    /// The range node pod CIDRs come from (upstream's --cluster-cidr); None: nodes bring their own.
    pub cluster_cidr: Option<nodeipam::ClusterCidr>,
    /// Requests per second each controller may send the API server, and its burst (upstream's
    /// --kube-api-qps, --kube-api-burst).
    pub kube_api_qps: f64,
    pub kube_api_burst: u32,
    /// Keys each controller reconciles at once (upstream's --concurrent-*-syncs).
    pub concurrent_replicaset_syncs: usize,
    pub concurrent_rc_syncs: usize,
    pub concurrent_job_syncs: usize,
    pub concurrent_cron_job_syncs: usize,
    pub concurrent_daemonset_syncs: usize,
    pub concurrent_statefulset_syncs: usize,
    pub concurrent_deployment_syncs: usize,
    pub concurrent_gc_syncs: usize,
    pub concurrent_endpoint_syncs: usize,
    pub concurrent_namespace_syncs: usize,
    /// The horizontal pod autoscaler's period and default scale-down window (upstream's
    /// --horizontal-pod-autoscaler-sync-period and -downscale-stabilization).
    pub horizontal_pod_autoscaler: podautoscaler::AutoscalerConfig,
    /// The cluster CA (PEM) published to every namespace as `kube-root-ca.crt`; None (a
    /// cluster serving plain HTTP) publishes nothing.
    pub root_ca: Option<String>,
}

/// Default --kube-api-qps. Upstream's 20 suits a remote API server shared by thousands of
/// nodes and clients; here the API server is in the same process or on the same bus and takes
/// several thousand writes a second, so a controller may create a large ReplicaSet's pods at
/// hundreds a second while the limit still stops a runaway one from taking it all.
pub const KUBE_API_QPS: f64 = 1000.0;
/// Default --kube-api-burst.
pub const KUBE_API_BURST: u32 = 2000;

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            cluster_cidr: None,
            kube_api_qps: KUBE_API_QPS,
            kube_api_burst: KUBE_API_BURST,
            concurrent_replicaset_syncs: replicaset::WORKERS,
            concurrent_rc_syncs: replicaset::WORKERS,
            concurrent_job_syncs: job::WORKERS,
            concurrent_cron_job_syncs: cronjob::WORKERS,
            concurrent_daemonset_syncs: daemonset::WORKERS,
            concurrent_statefulset_syncs: statefulset::WORKERS,
            concurrent_deployment_syncs: deployment::WORKERS,
            concurrent_gc_syncs: garbagecollector::WORKERS,
            concurrent_endpoint_syncs: endpoints::WORKERS,
            concurrent_namespace_syncs: namespace::WORKERS,
            horizontal_pod_autoscaler: Default::default(),
            root_ca: None,
        }
    }
}

impl Actor for ControllerManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (client, leader) = (self.client.clone(), self.leader.clone());
        kubus_controller_runtime::leader::lead_then(self, ctx, client, leader, ControllerManager::lead);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for thread in self.threads.drain(..) {
            thread.stop();
        }
    }
}

impl ControllerManager {
    fn lead(&mut self, _: &mut Context<Self>) {
        let factory = &self.informers;
        let c = &self.config;
        // Each controller's client has its own token bucket, as each of upstream's does.
        let client = |name: &str| self.client.with_rate_limit(c.kube_api_qps, c.kube_api_burst, name);
        let mut controllers: Vec<(&'static str, BoxFuture<'static, ()>)> = vec![
            (
                "kcm-replicaset",
                replicaset::run::<ReplicaSet>(client("replicaset"), factory, c.concurrent_replicaset_syncs),
            ),
            (
                "kcm-replication",
                replicaset::run::<ReplicationController>(
                    client("replicationcontroller"),
                    factory,
                    c.concurrent_rc_syncs,
                ),
            ),
            ("kcm-deployment", deployment::run(client("deployment"), factory, c.concurrent_deployment_syncs)),
            ("kcm-job", job::run(client("job"), factory, c.concurrent_job_syncs)),
            ("kcm-daemonset", daemonset::run(client("daemonset"), factory, c.concurrent_daemonset_syncs)),
            ("kcm-statefulset", statefulset::run(client("statefulset"), factory, c.concurrent_statefulset_syncs)),
            ("kcm-disruption", disruption::run(client("disruption"), factory, disruption::WORKERS)),
            ("kcm-pv", persistentvolume::run(client("persistentvolume"), factory, persistentvolume::WORKERS)),
            ("kcm-quota", resourcequota::run(client("resourcequota"), factory, resourcequota::WORKERS)),
            ("kcm-cronjob", cronjob::run(client("cronjob"), factory, c.concurrent_cron_job_syncs)),
            ("kcm-ttl", ttlafterfinished::run(client("ttlafterfinished"), factory, ttlafterfinished::WORKERS)),
            (
                "kcm-hpa",
                podautoscaler::run(
                    client("horizontal-pod-autoscaler"),
                    factory,
                    podautoscaler::WORKERS,
                    c.horizontal_pod_autoscaler,
                ),
            ),
            ("kcm-namespace", namespace::run(client("namespace"), factory, c.concurrent_namespace_syncs)),
            ("kcm-gc", garbagecollector::run(client("garbagecollector"), factory, c.concurrent_gc_syncs)),
            ("kcm-endpoints", endpoints::run(client("endpoints"), factory, c.concurrent_endpoint_syncs)),
            ("kcm-nodelife", nodelifecycle::run(client("nodelifecycle"), factory, c.node_monitor_grace_period)),
            (
                "kcm-crole-agg",
                clusterroleaggregation::run(
                    client("clusterrole-aggregation-controller"),
                    factory,
                    clusterroleaggregation::WORKERS,
                ),
            ),
        ];
        if let Some(cidr) = c.cluster_cidr {
            controllers.push(("kcm-nodeipam", nodeipam::run(client("nodeipam"), factory, cidr)));
        }
        if let Some(ca) = c.root_ca.clone() {
            controllers.push(("kcm-root-ca", rootcacertpublisher::run(client("root-ca-cert-publisher"), factory, ca)));
        }
        for (name, run) in controllers {
            let thread = kubus_controller_runtime::arbiter::named(name);
            thread.spawn(run);
            self.threads.push(thread);
        }
        tracing::info!("controller manager started");
    }
}

impl Supervised for ControllerManager {}

/// Stops the controller manager for good (see `kubus_apiserver::Shutdown`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for ControllerManager {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
