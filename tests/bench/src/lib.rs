//! `kubus bench`: the measurements recorded in docs/benchmarks.md, kept out of the product's
//! sources. The `kubus` binary parses [`BenchArgs`] and calls [`run`]; the benches start the
//! processes they measure from that same binary (`kubus up`, `kubus node`, `kubus shim`).
//!
//! - `api`: throughput and latency of the API server over HTTPS (and, in process, what request
//!   metrics and admission cost per request: `admission_cost`);
//! - `cluster`: the scheduler at scale with simulated nodes (pods created directly);
//! - `controllers`: a Deployment's whole life at scale with simulated nodes;
//! - `soak`: hours of steady churn with simulated nodes, reported every period;
//! - `jobs`, `daemonset`: a Job's and a DaemonSet's life with simulated nodes;
//! - `statefulset`: a StatefulSet with local-path claims on the real node;
//! - `node`: the node agent with real containers, and the runtime path beside runc;
//! - `proxy`: kube-proxy on the real datapath;
//! - `hpa`: a HorizontalPodAutoscaler's reaction to load on the real node.
//!
//! Shared by them: `http` (a minimal HTTP/1.1 client), `host` (procfs readings, tokens, child
//! processes), `stats` (percentiles), `pod_watch` (a pods watch the workload benches follow),
//! `real_node` (`kubus up` with its real node, cleaned up after).
#![forbid(unsafe_code)]

mod admission_cost;
mod api;
mod cluster;
mod controllers;
mod daemonset;
mod host;
mod hpa;
mod http;
mod jobs;
pub mod kubeconfig;
mod node;
mod pod_watch;
mod proxy;
mod real_node;
mod sim_cluster;
mod soak;
mod statefulset;
mod stats;

pub use daemonset::DaemonSetArgs;
pub use hpa::HpaArgs;
pub use jobs::JobsArgs;
pub use node::NodeBenchArgs;
pub use proxy::ProxyBenchArgs;
pub use statefulset::StatefulSetArgs;

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
    /// A Deployment's whole life at scale, the path users take: `kubus up --sim-nodes N` as a
    /// child; R replicas created, scheduled and Running; scaled to 2R and back; a rolling
    /// update; cascading deletes (background, then foreground). Time, CPU per pod by component,
    /// reconciles and their mean time by controller, RSS, and the queues left at the end.
    Controllers {
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        #[arg(long, default_value_t = 30000)]
        replicas: usize,
        /// Seconds any one phase may take before the bench gives up.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Extra `kubus up` flags (repeatable), e.g. `--up-arg=--kube-api-qps=100`.
        #[arg(long = "up-arg", allow_hyphen_values = true)]
        up_args: Vec<String>,
    },
    /// Hours of steady churn at scale (`kubus up --sim-nodes N` as a child): Deployments scaled
    /// and rolled in turn, a Service of thousands of endpoints, pods that never fit; every
    /// period the control plane's CPU and RSS, reconciles/s, queues, the objects stream's size,
    /// the watch cache, a paged LIST of every pod, watch latency and nodes not Ready.
    Soak(soak::SoakArgs),
    /// One Job on simulated nodes whose pods run `--run-seconds` each: time to Complete,
    /// completions per second, pods created, most pods active at once, the controller
    /// manager's CPU.
    Jobs(JobsArgs),
    /// A DaemonSet over N simulated nodes: every node Ready, then an image change rolled out
    /// with maxUnavailable and with maxSurge (time, most nodes without an available pod).
    Daemonset(DaemonSetArgs),
    /// A Parallel StatefulSet on the real node (root), optionally with a local-path claim per
    /// pod: time until the claims are Bound and the pods Ready; everything removed after.
    Statefulset(StatefulSetArgs),
    /// The node agent with real containers (root): pod startup latency, the runtime path beside
    /// runc, RSS of the agent and its shims (`kubus up --no-node` + `kubus node` as children).
    Node(NodeBenchArgs),
    /// kube-proxy on the real datapath (root): endpoint change -> rule live with 1,000 Services
    /// x 10 endpoints, and connection latency through a ClusterIP against the pod IP.
    Proxy(ProxyBenchArgs),
    /// A HorizontalPodAutoscaler's reaction on the real node (root): CPU load starts -> high
    /// utilization seen -> scale-up decided -> new pods Ready; load ends -> scale-down.
    Hpa(HpaArgs),
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
        /// An existing API server, reached as this kubeconfig says (server, CA, client
        /// certificate); default: start one.
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// The API server this bench starts serves plain HTTP without authentication (the
        /// development --insecure-http), to compare with HTTPS and client certificates.
        #[arg(long)]
        insecure_http: bool,
        /// Put a ResourceQuota on the ConfigMaps first, so every create is charged to it
        /// (quota admission's cost; without it admission only looks for quotas).
        #[arg(long)]
        quota: bool,
        /// Also time request metrics and the admission chain in process, per request, without
        /// a quota and with one, against the create p99 of the run.
        #[arg(long)]
        admission_cost: bool,
        /// Send the requests over NATS as the cluster's components do (ApiClient), each with
        /// the admin certificate's assertion (authenticated and authorized per request); with
        /// --insecure-http, without credentials (the development cluster takes them as the
        /// administrator).
        #[arg(long)]
        nats: bool,
        /// The bench's API server audits as `kubus up` does by default (the default policy,
        /// events to the audit stream); `none` audits nothing, `request` records every request
        /// with its object (to measure what auditing costs).
        #[arg(long, default_value = "default", value_parser = ["default", "none", "request"])]
        audit: String,
    },
}

/// Runs one bench inside the binary's actix system, and stops the system at the end.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let result = match args.what {
        BenchWhat::Api {
            objects,
            concurrency,
            watchers,
            kubeconfig,
            insecure_http,
            quota,
            admission_cost,
            nats,
            audit,
        } => {
            api::run(api::Options {
                objects,
                concurrency,
                watchers,
                kubeconfig,
                insecure_http,
                quota,
                admission_cost,
                nats,
                audit,
            })
            .await
        }
        BenchWhat::Cluster { nodes, pods, anti_affinity, concurrency } => {
            cluster::run(nodes, pods, anti_affinity, concurrency).await
        }
        BenchWhat::Controllers { nodes, replicas, timeout, up_args } => {
            controllers::run(nodes, replicas, timeout, up_args).await
        }
        BenchWhat::Soak(soak) => soak::run(soak).await,
        BenchWhat::Jobs(jobs) => jobs::run(jobs).await,
        BenchWhat::Daemonset(ds) => daemonset::run(ds).await,
        BenchWhat::Statefulset(sts) => statefulset::run(sts).await,
        BenchWhat::Node(node) => node::run(node).await,
        BenchWhat::Proxy(proxy) => proxy::run(proxy).await,
        BenchWhat::Hpa(hpa) => hpa::run(hpa).await,
    };
    actix::System::current().stop();
    result
}
