//! kube-proxy (nftables): Services and EndpointSlices become one nftables table of our own,
//! shaped like upstream kube-proxy's nftables mode (verdict maps keyed by address, protocol
//! and port; a chain per service port and per endpoint; `numgen random` balancing).
//!
//! - [`ProxyRules`]: pure computation of the ruleset from typed Services and EndpointSlices.
//! - [`Proxier`]: applies it atomically with `nft -f -`, owns the service CIDR route.
//! - [`KubeProxy`]: the actor that resyncs on every informer change (rate-limited).
//! - [`ServiceSlices`]: a Service's EndpointSlices, from the informer's index or a list.
#![forbid(unsafe_code)]

mod actor;
mod metrics;
mod proxier;
mod rules;
mod slices;

pub use actor::{KubeProxy, Shutdown};
pub use proxier::{Proxier, ProxierConfig, ProxierError, SyncStats};
pub use rules::{ProxyRules, RulesConfig, RulesError, UdpFlow};
pub use slices::{ServiceSlices, SliceList, SERVICE_NAME_LABEL};
