//! The controller manager: each controller is a reconciler on the shared runtime (informers
//! over the store, a work queue, writes through the API server), started together by
//! [`ControllerManager`].
#![forbid(unsafe_code)]

pub mod deployment;
pub mod endpoints;
pub mod expectations;
pub mod garbagecollector;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod owner;
pub mod replicaset;

use actix::prelude::*;
use kubus_apimachinery::ResourceInfo;
use kubus_runtime::{Client, Informer, InformerFactory};
use std::sync::Arc;

/// Informers shared by every controller (one per resource, however many controllers read it).
#[derive(Clone)]
pub struct Informers {
    pub pods: Informer,
    pub replicasets: Informer,
    pub deployments: Informer,
    pub namespaces: Informer,
    pub serviceaccounts: Informer,
    pub nodes: Informer,
    /// Every stored resource (the garbage collector watches them all), by resource info.
    pub all: Vec<(&'static ResourceInfo, Informer)>,
}

impl Informers {
    pub fn start(factory: &InformerFactory) -> Informers {
        let all: Vec<(&'static ResourceInfo, Informer)> = kubus_apimachinery::resource::all()
            .iter()
            .filter(|r| r.storage_group == r.group)
            .map(|r| (r, factory.get(r.group, r.resource)))
            .collect();
        let get = |g: &str, r: &str| {
            all.iter()
                .find(|(i, _)| i.group == g && i.resource == r)
                .map(|(_, inf)| inf.clone())
                .expect("resource is served")
        };
        Informers {
            pods: get("", "pods"),
            replicasets: get("apps", "replicasets"),
            deployments: get("apps", "deployments"),
            namespaces: get("", "namespaces"),
            serviceaccounts: get("", "serviceaccounts"),
            nodes: get("", "nodes"),
            all,
        }
    }
}

/// The controller manager actor: runs every controller's loops in its context, so a
/// supervisor restart restarts them all (with fresh informers).
pub struct ControllerManager {
    pub informers: InformerFactory,
    pub client: Client,
    pub config: ControllerConfig,
    /// Leader election (None: this controller manager is the only one).
    pub leader: Option<kubus_runtime::leader::LeaderConfig>,
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How long a node may go without renewing its Lease before it is NotReady (upstream's
    /// --node-monitor-grace-period).
    pub node_monitor_grace_period: std::time::Duration,
    /// The range node pod CIDRs come from (upstream's --cluster-cidr); None: nodes bring their own.
    pub cluster_cidr: Option<nodeipam::ClusterCidr>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig { node_monitor_grace_period: std::time::Duration::from_secs(40), cluster_cidr: None }
    }
}

impl Actor for ControllerManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (client, leader) = (self.client.clone(), self.leader.clone());
        kubus_runtime::leader::lead_then(self, ctx, client, leader, ControllerManager::lead);
    }
}

impl ControllerManager {
    fn lead(&mut self, ctx: &mut Context<Self>) {
        let informers = Informers::start(&self.informers);
        let informer = |group: &str, resource: &str| {
            informers
                .all
                .iter()
                .find(|(i, _)| i.group == group && i.resource == resource)
                .map(|(_, inf)| inf.clone())
                .expect("resource is served")
        };
        let leases = informer("coordination.k8s.io", "leases");
        let rs = Arc::new(replicaset::ReplicaSetController::new(self.client.clone(), informers.clone()));
        let deploy = Arc::new(deployment::DeploymentController::new(self.client.clone(), informers.clone()));
        let ns = Arc::new(namespace::NamespaceController::new(self.client.clone(), informers.clone()));
        let gc = Arc::new(garbagecollector::GarbageCollector::new(self.client.clone(), informers.clone()));
        let loops = replicaset::run(rs)
            .into_iter()
            .chain(deployment::run(deploy))
            .chain(namespace::run(ns))
            .chain(garbagecollector::run(gc))
            .chain(endpoints::run(Arc::new(endpoints::EndpointsController::new(
                self.client.clone(),
                informers.clone(),
                informer("", "services"),
                informer("", "endpoints"),
                informer("discovery.k8s.io", "endpointslices"),
            ))))
            .chain(nodelifecycle::run(Arc::new(nodelifecycle::NodeLifecycleController::new(
                self.client.clone(),
                informers.clone(),
                leases,
                self.config.node_monitor_grace_period,
            ))));
        let loops: Vec<_> = match self.config.cluster_cidr {
            Some(cidr) => loops
                .chain(nodeipam::run(Arc::new(nodeipam::NodeIpamController::new(
                    self.client.clone(),
                    informers.clone(),
                    cidr,
                ))))
                .collect(),
            None => loops.collect(),
        };
        for fut in loops {
            ctx.spawn(fut.into_actor(self));
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
