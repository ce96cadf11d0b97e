//! `kubus bench`: the measurements recorded in docs/benchmarks.md, kept out of the product's
//! sources. The `kubus` binary parses [`BenchArgs`] and calls [`run`]; the benches start the
//! processes they measure from that same binary (`kubus up`, `kubus node`, `kubus shim`).
//!
//! - `api`: throughput and latency of the API server over HTTP;
//! - `cluster`: the scheduler and controllers at scale with simulated nodes;
//! - `node`: the node agent with real containers, and the runtime path beside runc;
//! - `proxy`: kube-proxy on the real datapath.
//!
//! Shared by them: `http` (a minimal HTTP/1.1 client), `host` (procfs readings, tokens, child
//! processes), `stats` (percentiles).
#![forbid(unsafe_code)]

mod api;
mod cluster;
mod host;
mod http;
mod node;
mod proxy;
mod stats;

pub use host::is_root;
pub use node::NodeBenchArgs;
pub use proxy::ProxyBenchArgs;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchWhat {
    /// The scheduler and controllers at scale: `kubus up --sim-nodes N` as a child process,
    /// then M pods created through the API; nodes-Ready time, scheduling throughput,
    /// time to Running, RSS.
    Cluster {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 2000)]
        pods: usize,
        /// Pods carry required anti-affinity on kubernetes.io/hostname within groups of
        /// `nodes` pods (so every group fits exactly once per node).
        #[arg(long)]
        anti_affinity: bool,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// The node agent with real containers (root): pod startup latency, the runtime path beside
    /// runc, RSS of the agent and its shims (`kubus up --no-node` + `kubus node` as children).
    Node(NodeBenchArgs),
    /// kube-proxy on the real datapath (root): endpoint change -> rule live with 1,000 Services
    /// x 10 endpoints, and connection latency through a ClusterIP against the pod IP.
    Proxy(ProxyBenchArgs),
    /// create/get/update/list/watch against the API server.
    Api {
        /// Objects to create (and then get and update).
        #[arg(long, default_value_t = 2000)]
        objects: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Watchers for the watch delivery measurement.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// An existing API server (http://host:port); default: start one.
        #[arg(long)]
        server: Option<String>,
    },
}

/// Runs one bench inside the binary's actix system, and stops the system at the end.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let result = match args.what {
        BenchWhat::Api { objects, concurrency, watchers, server } => {
            api::run(objects, concurrency, watchers, server).await
        }
        BenchWhat::Cluster { nodes, pods, anti_affinity, concurrency } => {
            cluster::run(nodes, pods, anti_affinity, concurrency).await
        }
        BenchWhat::Node(node) => node::run(node).await,
        BenchWhat::Proxy(proxy) => proxy::run(proxy).await,
    };
    actix::System::current().stop();
    result
}
