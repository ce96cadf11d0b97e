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
use kubus_controller_runtime::client_builder::{ControllerClients, TokenRenewal};
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
    /// Each controller acts as its own ServiceAccount in kube-system, with only its
    /// `system:controller:*` role (upstream's --use-service-account-credentials, which kubeadm
    /// sets); off, every controller acts as the controller manager.
    pub use_service_account_credentials: bool,
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
            use_service_account_credentials: false,
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
        let identities = Identities {
            manager: &self.client,
            clients: c.use_service_account_credentials.then(|| ControllerClients::new(self.client.clone())),
            qps: c.kube_api_qps,
            burst: c.kube_api_burst,
        };
        // (thread name, controller); ServiceAccounts are named as upstream's.
        let mut controllers: Vec<(&'static str, BoxFuture<'static, ()>)> = Vec::new();
        let mut start =
            |thread: &'static str, limiter: &str, sa: &str, run: &dyn Fn(Client) -> BoxFuture<'static, ()>| {
                let (client, renewal) = identities.client(&identities.limited(limiter), sa);
                controllers.push((thread, with_token(renewal, run(client))));
            };
        start("kcm-replicaset", "replicaset", "replicaset-controller", &|client| {
            replicaset::run::<ReplicaSet>(client, factory, c.concurrent_replicaset_syncs)
        });
        start("kcm-replication", "replicationcontroller", "replication-controller", &|client| {
            replicaset::run::<ReplicationController>(client, factory, c.concurrent_rc_syncs)
        });
        start("kcm-deployment", "deployment", "deployment-controller", &|client| {
            deployment::run(client, factory, c.concurrent_deployment_syncs)
        });
        start("kcm-job", "job", "job-controller", &|client| job::run(client, factory, c.concurrent_job_syncs));
        start("kcm-daemonset", "daemonset", "daemon-set-controller", &|client| {
            daemonset::run(client, factory, c.concurrent_daemonset_syncs)
        });
        start("kcm-statefulset", "statefulset", "statefulset-controller", &|client| {
            statefulset::run(client, factory, c.concurrent_statefulset_syncs)
        });
        start("kcm-disruption", "disruption", "disruption-controller", &|client| {
            disruption::run(client, factory, disruption::WORKERS)
        });
        // Upstream's binder; the PV and PVC protection finalizers it removes are in its rights.
        start("kcm-pv", "persistentvolume", "persistent-volume-binder", &|client| {
            persistentvolume::run(client, factory, persistentvolume::WORKERS)
        });
        start("kcm-quota", "resourcequota", "resourcequota-controller", &|client| {
            resourcequota::run(client, factory, resourcequota::WORKERS)
        });
        start("kcm-cronjob", "cronjob", "cronjob-controller", &|client| {
            cronjob::run(client, factory, c.concurrent_cron_job_syncs)
        });
        start("kcm-ttl", "ttlafterfinished", "ttl-after-finished-controller", &|client| {
            ttlafterfinished::run(client, factory, ttlafterfinished::WORKERS)
        });
        start("kcm-hpa", "horizontal-pod-autoscaler", "horizontal-pod-autoscaler", &|client| {
            podautoscaler::run(client, factory, podautoscaler::WORKERS, c.horizontal_pod_autoscaler)
        });
        start("kcm-gc", "garbagecollector", "generic-garbage-collector", &|client| {
            garbagecollector::run(client, factory, c.concurrent_gc_syncs)
        });
        start("kcm-nodelife", "nodelifecycle", "node-controller", &|client| {
            nodelifecycle::run(client, factory, c.node_monitor_grace_period)
        });
        start("kcm-crole-agg", "clusterrole-aggregation-controller", "clusterrole-aggregation-controller", &|client| {
            clusterroleaggregation::run(client, factory, clusterroleaggregation::WORKERS)
        });
        if let Some(cidr) = c.cluster_cidr {
            start("kcm-nodeipam", "nodeipam", "node-controller", &|client| nodeipam::run(client, factory, cidr));
        }
        if let Some(ca) = c.root_ca.clone() {
            start("kcm-root-ca", "root-ca-cert-publisher", "root-ca-cert-publisher", &|client| {
                rootcacertpublisher::run(client, factory, ca.clone())
            });
        }
        // Two controllers do the work of two of upstream's each, under both identities: the
        // namespace controller makes each namespace's `default` ServiceAccount as upstream's
        // service account controller, and the endpoints controller writes EndpointSlices as
        // upstream's EndpointSlice controller.
        let mut start_as_two = |thread: &'static str,
                                limiter: &str,
                                sas: [&str; 2],
                                run: &dyn Fn(Client, Client) -> BoxFuture<'static, ()>| {
            let limited = identities.limited(limiter);
            let (first, first_renewal) = identities.client(&limited, sas[0]);
            let (second, second_renewal) = identities.client(&limited, sas[1]);
            controllers.push((thread, with_token(first_renewal, with_token(second_renewal, run(first, second)))));
        };
        start_as_two(
            "kcm-namespace",
            "namespace",
            ["namespace-controller", "service-account-controller"],
            &|c1, c2| namespace::run(c1, c2, factory, c.concurrent_namespace_syncs),
        );
        start_as_two("kcm-endpoints", "endpoints", ["endpoint-controller", "endpointslice-controller"], &|c1, c2| {
            endpoints::run(c1, c2, factory, c.concurrent_endpoint_syncs)
        });
        for (name, run) in controllers {
            let thread = kubus_controller_runtime::arbiter::named(name);
            thread.spawn(run);
            self.threads.push(thread);
        }
        tracing::info!(service_account_credentials = c.use_service_account_credentials, "controller manager started");
    }
}

/// Who each controller is to the API servers.
struct Identities<'a> {
    manager: &'a Client,
    /// Per-controller ServiceAccounts (None: every controller acts as the manager).
    clients: Option<ControllerClients>,
    qps: f64,
    burst: u32,
}

impl Identities<'_> {
    /// The manager's client with a token bucket of its own, named `limiter` in the metrics:
    /// each controller has one, as each of upstream's does.
    fn limited(&self, limiter: &str) -> Client {
        self.manager.with_rate_limit(self.qps, self.burst, limiter)
    }

    /// `base` acting as ServiceAccount `sa`, and the renewal of its token.
    fn client(&self, base: &Client, sa: &str) -> (Client, Option<TokenRenewal>) {
        match &self.clients {
            Some(clients) => {
                let c = clients.client_for(sa, base);
                (c.client, Some(c.credentials))
            }
            None => (base.clone(), None),
        }
    }
}

/// `run` once its token is in, renewing it while it runs.
fn with_token(renewal: Option<TokenRenewal>, run: BoxFuture<'static, ()>) -> BoxFuture<'static, ()> {
    match renewal {
        Some(renewal) => renewal.run(run),
        None => run,
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
