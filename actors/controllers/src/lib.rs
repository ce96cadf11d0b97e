//! The controller manager: each controller is a reconciler on the shared runtime's
//! [`Controller`](kubus_controller_runtime::Controller) builder (typed informers from the
//! process's factory, a work queue, writes through the API server), started together by
//! [`ControllerManager`].
#![forbid(unsafe_code)]

pub mod adoption;
pub mod deployment;
pub mod endpoints;
pub mod expectations;
pub mod garbagecollector;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;

use actix::prelude::*;
use futures::future::BoxFuture;
use kubus_controller_runtime::{Client, InformerFactory};

/// The controller manager actor: runs every controller in its context, so a supervisor
/// restart (or a lost leadership) stops them all; the informers are the process's, shared.
pub struct ControllerManager {
    pub informers: InformerFactory,
    pub client: Client,
    pub config: ControllerConfig,
    /// Leader election (None: this controller manager is the only one).
    pub leader: Option<kubus_controller_runtime::leader::LeaderConfig>,
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
        kubus_controller_runtime::leader::lead_then(self, ctx, client, leader, ControllerManager::lead);
    }
}

impl ControllerManager {
    fn lead(&mut self, ctx: &mut Context<Self>) {
        let (client, factory) = (&self.client, &self.informers);
        let mut controllers: Vec<BoxFuture<'static, ()>> = vec![
            replicaset::run(client.clone(), factory),
            deployment::run(client.clone(), factory),
            namespace::run(client.clone(), factory),
            garbagecollector::run(client.clone(), factory),
            endpoints::run(client.clone(), factory),
            nodelifecycle::run(client.clone(), factory, self.config.node_monitor_grace_period),
        ];
        if let Some(cidr) = self.config.cluster_cidr {
            controllers.push(nodeipam::run(client.clone(), factory, cidr));
        }
        for fut in controllers {
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
