//! kube-proxy (nftables): Services and EndpointSlices become one nftables table of our own,
//! shaped like upstream kube-proxy's nftables mode (verdict maps keyed by address, protocol
//! and port; a chain per service port and per endpoint; `numgen random` balancing).
//!
//! - [`ProxyRules`]: pure computation of the ruleset from typed Services and EndpointSlices,
//!   one Service at a time, and of the nft transaction for what changed ([`RulesUpdate`]).
//! - [`ServiceChanges`]: the Services informer events marked changed since the last sync.
//! - [`Proxier`]: applies it atomically with `nft -f -`, owns the service CIDR route.
//! - [`KubeProxy`]: the actor that tracks informer changes and syncs them (rate-limited).
//! - [`Services`], [`ServiceSlices`]: Services and their EndpointSlices, from the informers
//!   or from lists.
#![forbid(unsafe_code)]

mod actor;
mod changes;
mod metrics;
mod proxier;
mod rules;
mod services;
mod slices;

pub use actor::{KubeProxy, Shutdown};
pub use changes::ServiceChanges;
pub use proxier::{Proxier, ProxierConfig, ProxierError, SyncStats};
pub use rules::{ProxyRules, RulesConfig, RulesError, RulesUpdate, UdpFlow};
pub use services::{ServiceList, Services};
pub use slices::{ServiceSlices, SliceList, SERVICE_NAME_LABEL};
