//! The node agent (kubelet) of Kubus: registers its node with the machine's capacity, renews
//! its Lease, and runs the pods bound to it as real Linux containers: one [`pod_worker`] per
//! pod drives its sandbox (network namespace, CNI), volumes and containers (through shims
//! around youki's libcontainer) and reports their status. Containers outlive the agent; a
//! restarted agent adopts them. Logs, exec and port-forward are served over the bus to the
//! API server ([`streams`]).
//!
//! Layout: [`agent`] (the actor: pods to workers, orphan sweeps), [`heartbeat`] (registration,
//! Lease, node status, the pod network), [`image_gc`] (image imports and garbage collection),
//! [`pod_worker`] (one pod's life), [`host`] (what a worker uses of its node, behind traits),
//! [`stats`] (resource usage: reports for metrics.k8s.io, cAdvisor's series on /metrics),
//! [`pod_startup_latency`] (the pod startup SLI).
#![forbid(unsafe_code)]

pub mod agent;
pub mod backoff;
pub mod config;
pub mod context;
pub mod env;
pub mod handlers;
pub mod heartbeat;
pub mod host;
pub mod image_gc;
pub mod local_path;
pub mod node;
pub mod objects;
pub mod pod_startup_latency;
pub mod pod_worker;
pub mod probes;
pub mod reset;
pub mod routes;
pub mod sandbox;
pub mod spec;
pub mod stats;
pub mod status;
pub mod streams;
pub mod volumes;

pub use agent::Kubelet;
pub use config::KubeletConfig;
pub use context::{NodeContext, PodHandle, PodHandleInner};
pub use reset::reset;

// The runtime's labels: adoption after a restart reads what the shims recorded.
pub use kubus_container_runtime::labels::{
    CONTAINER_NAME as LABEL_CONTAINER, POD_NAME as LABEL_POD_NAME, POD_NAMESPACE as LABEL_POD_NAMESPACE,
    POD_UID as LABEL_POD_UID, RESTART_COUNT as LABEL_ATTEMPT,
};
pub const LABEL_IMAGE: &str = "io.kubus.image";
pub const LABEL_IMAGE_ID: &str = "io.kubus.image.id";
pub const LABEL_INIT: &str = "io.kubus.init";

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("container runtime: {0}")]
    Runtime(#[from] kubus_container_runtime::RuntimeError),
    #[error("cgroups: {0}")]
    Cgroups(#[from] kubus_container_runtime::cgroups::CgroupError),
    #[error("image store: {0}")]
    Image(#[from] kubus_image::ImageError),
    #[error("registries: {0}")]
    Registries(#[from] kubus_image::RegistriesError),
    #[error("pod network: {0}")]
    Network(#[from] kubus_network::NetworkError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
