//! Cluster DNS: answers `<svc>.<ns>.svc.<domain>` (ClusterIP or, for headless Services, the
//! ready endpoints), `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV, `<a-b-c-d>.<ns>.pod.<domain>`
//! and ClusterIP PTR records from Service and EndpointSlice informers, and forwards every
//! other name to the node's resolvers, as kube-dns/CoreDNS do in a Kubernetes cluster.
#![forbid(unsafe_code)]

pub mod forward;
pub mod index;
pub mod metrics;
pub mod server;

pub use forward::{upstreams_from_resolv_conf, ForwardError, Forwarder};
pub use index::{Answer, DnsIndex, IndexError, Resolver, DEFAULT_TTL};
pub use server::{ClusterDns, DnsConfig, DnsError, Handler};
