//! The nftables ruleset for a set of Services and EndpointSlices (no I/O).
//!
//! The ruleset is the fixed base chains plus one [`ServiceRules`] per Service: its chains, map
//! elements and affinity sets, named after the Service (chains, sets) or keyed by its ClusterIP
//! and NodePorts (map elements), so that no two Services share anything. A sync recomputes
//! only the Services marked changed ([`ServiceChanges`]) and writes an nft transaction for
//! only those ([`RulesUpdate`]), as upstream's proxiers apply only what their change trackers
//! recorded.
//!
//! Layout (after upstream kube-proxy's nftables mode):
//! - `service-ips` map: `clusterIP . proto . port` -> `goto service-<H>-ns/name/proto/port`.
//! - `service-nodeports` map: `proto . nodePort` -> `goto external-...` (matched only for local
//!   destinations via `fib daddr type local`), which marks for masquerade and goes to the service.
//! - Service chains balance with `numgen random mod N vmap` over endpoint chains, which mark
//!   hairpin traffic (a pod reaching itself) for masquerade and DNAT.
//! - sessionAffinity ClientIP: one dynamic set with a timeout per endpoint; the endpoint chain
//!   records the client, the service chain sends recorded clients to the same endpoint first.
//! - Services without usable endpoints are in `no-endpoint-*` maps, checked from filter hooks
//!   (reject is only allowed there) so clients get a reset / port-unreachable at once.
//!
//! - Traffic policies (with the node's name known): internalTrafficPolicy Local sends ClusterIP
//!   traffic to this node's endpoints only (rejected when it has none); externalTrafficPolicy
//!   Local sends NodePort traffic from outside to this node's endpoints without masquerading,
//!   so pods see the client's address (dropped when it has none, so load balancers health-check
//!   to other nodes), while pods and the node itself still reach every endpoint, as upstream.
//!
//! Not done yet: LoadBalancer ingress IPs, externalIPs, healthCheckNodePort, IPv6.

use crate::changes::ServiceChanges;
use crate::services::{ServiceList, Services};
use crate::slices::ServiceSlices;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_apimachinery::{ObjectExt, ObjectKey};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Packet mark bit meaning "masquerade this in postrouting" (upstream's 0x4000).
pub const MASQUERADE_MARK: u32 = 0x4000;
/// Upstream's default sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u64 = 10800;

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("invalid nftables table name {0:?}")]
    InvalidTable(String),
    #[error("invalid IPv4 CIDR {0:?}")]
    InvalidCidr(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesConfig {
    /// nftables table (family ip) owned by this proxy.
    pub table: String,
    /// The pods' CIDR: traffic to a ClusterIP from outside it is masqueraded, so that replies
    /// come back through this node (upstream's --cluster-cidr). None: only hairpin and NodePort
    /// traffic is masqueraded.
    pub cluster_cidr: Option<String>,
    /// Also answer NodePorts on 127.0.0.0/8. Needs net.ipv4.conf.all.route_localnet=1 (the
    /// Proxier sets it) since the DNATed packet leaves with a loopback source until masqueraded.
    pub localhost_nodeports: bool,
    /// This node's name: endpoints whose `nodeName` matches are local, for the traffic
    /// policies. None: every policy acts as Cluster.
    pub node_name: Option<String>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig { table: "kubus-proxy".into(), cluster_cidr: None, localhost_nodeports: true, node_name: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    /// `type ... hook ... priority ...;` for base chains.
    base: Option<String>,
    rules: Vec<String>,
}

/// A computed ruleset: the base chains and every Service's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRules {
    config: RulesConfig,
    base: BTreeMap<String, Chain>,
    /// Services with something programmed (headless ones and the like have no entry).
    services: BTreeMap<ObjectKey, Arc<ServiceRules>>,
    service_ports: usize,
    endpoints: usize,
}

/// One Service's share of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ServiceRules {
    chains: BTreeMap<String, Chain>,
    /// map name -> elements
    elements: BTreeMap<&'static str, BTreeSet<String>>,
    /// set name -> timeout seconds
    affinity_sets: BTreeMap<String, u64>,
    service_ports: usize,
    endpoints: usize,
    /// UDP flows these rules DNAT: (ClusterIP or None for a NodePort, port, endpoint). When an
    /// endpoint leaves, its conntrack entries must go too, or UDP "connections" keep reaching
    /// it (connectionless clients such as DNS resolvers reuse their ports).
    udp_flows: BTreeSet<UdpFlow>,
}

/// A UDP flow kube-proxy DNATs: destination (None: any local address, a NodePort), port, and
/// the endpoint address it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UdpFlow {
    pub dst: Option<Ipv4Addr>,
    pub port: u16,
    pub endpoint: Ipv4Addr,
}

const MAPS: [(&str, &str); 4] = [
    ("service-ips", "ipv4_addr . inet_proto . inet_service : verdict"),
    ("service-nodeports", "inet_proto . inet_service : verdict"),
    ("no-endpoint-services", "ipv4_addr . inet_proto . inet_service : verdict"),
    ("no-endpoint-nodeports", "inet_proto . inet_service : verdict"),
];

/// FNV-1a, base32-encoded: a short stable prefix keeps chain names unique even if the readable
/// part were ever ambiguous (upstream uses a SHA-256 prefix the same way).
fn hash_prefix(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..8).map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char).collect()
}

fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && s.len() < 200
}

fn parse_cidr(s: &str) -> Result<(), RulesError> {
    let (ip, len) = s.split_once('/').ok_or_else(|| RulesError::InvalidCidr(s.into()))?;
    ip.parse::<Ipv4Addr>().map_err(|_| RulesError::InvalidCidr(s.into()))?;
    match len.parse::<u8>() {
        Ok(l) if l <= 32 => Ok(()),
        _ => Err(RulesError::InvalidCidr(s.into())),
    }
}

/// The nft protocol of a Service or EndpointSlice port (unset: TCP).
fn protocol(p: Option<&str>) -> Option<&'static str> {
    match p.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

/// Endpoints of one service port: (ip, target port), already filtered for use.
type Endpoints = BTreeSet<(Ipv4Addr, u16)>;

/// One Service's endpoints from its EndpointSlices.
#[derive(Default)]
struct ServiceEndpoints {
    /// By (port name, proto): the ready endpoints and the serving-but-terminating ones
    /// (upstream falls back to the latter when a service has no ready endpoint, so connections
    /// drain during rollouts).
    by_port: BTreeMap<(String, &'static str), (Endpoints, Endpoints)>,
    /// Addresses of endpoints on this node.
    local: BTreeSet<Ipv4Addr>,
}

impl ServiceEndpoints {
    fn collect(slices: &impl ServiceSlices, namespace: &str, service: &str, node: Option<&str>) -> Self {
        let mut out = ServiceEndpoints::default();
        slices.for_each_of(namespace, service, &mut |slice| out.add(slice, node));
        out
    }

    fn add(&mut self, slice: &EndpointSlice, node: Option<&str>) {
        // Unset (an object not written by the API server) reads as IPv4, the API's default.
        if !matches!(slice.address_type.as_str(), "IPv4" | "") {
            return;
        }
        for port in slice.ports.iter().flatten() {
            let (Some(proto), Some(number)) = (protocol(port.protocol.as_deref()), port.port) else {
                continue;
            };
            let Ok(number) = u16::try_from(number) else { continue };
            let name = port.name.clone().unwrap_or_default();
            let entry = self.by_port.entry((name, proto)).or_default();
            for ep in &slice.endpoints {
                let c = ep.conditions.as_ref();
                // Unset conditions mean ready/serving (EndpointSlice API semantics).
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                let is_local = node.is_some() && ep.node_name.as_deref() == node;
                for ip in ep.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                    if is_local {
                        self.local.insert(ip);
                    }
                    if ready && !terminating {
                        entry.0.insert((ip, number));
                    } else if serving && terminating {
                        entry.1.insert((ip, number));
                    }
                }
            }
        }
    }
}

/// Builds the chains that balance one service port over a set of endpoints.
struct Balance<'a> {
    id: &'a str,
    proto: &'static str,
    affinity: Option<u64>,
}

impl Balance<'_> {
    /// `service-...`: every usable endpoint; traffic from outside the cluster CIDR is
    /// masqueraded, so that replies come back through this node.
    fn cluster_chain(&self, r: &mut ServiceRules, eps: &Endpoints, config: &RulesConfig) -> String {
        let mut rules = Vec::new();
        if let Some(cidr) = &config.cluster_cidr {
            rules.push(format!("ip saddr != {cidr} jump mark-for-masquerade"));
        }
        self.chain(r, "service", rules, eps)
    }

    /// `local-...`: this node's endpoints only; nothing is masqueraded (the client's address
    /// is kept, and replies from a local pod pass this node anyway).
    fn local_chain(&self, r: &mut ServiceRules, eps: &Endpoints) -> String {
        self.chain(r, "local", vec![], eps)
    }

    fn chain(&self, r: &mut ServiceRules, kind: &str, mut svc_rules: Vec<String>, eps: &Endpoints) -> String {
        let (id, proto) = (self.id, self.proto);
        let svc_chain = format!("{kind}-{}-{id}", hash_prefix(id));
        let mut vmap = Vec::new();
        for (i, (ip, target)) in eps.iter().enumerate() {
            let ep_id = format!("{id}__{ip}/{target}");
            let ep_chain = format!("endpoint-{}-{ep_id}", hash_prefix(&ep_id));
            let mut ep_rules = vec![format!("ip saddr {ip} jump mark-for-masquerade")];
            if let Some(timeout) = self.affinity {
                // The timeout is part of the set's identity: nft cannot change the timeout of
                // an existing set, so a new timeout makes a new set.
                let set_id = format!("{ep_id}/{timeout}");
                let set = format!("affinity-{}-{ep_id}", hash_prefix(&set_id));
                ep_rules.push(format!("update @{set} {{ ip saddr }}"));
                svc_rules.push(format!("ip saddr @{set} goto {ep_chain}"));
                r.affinity_sets.insert(set, timeout);
            }
            // nft 1.0.6 needs the l4 protocol spelled out before `dnat to ip:port`.
            ep_rules.push(format!("meta l4proto {proto} dnat to {ip}:{target}"));
            r.chains.insert(ep_chain.clone(), Chain { base: None, rules: ep_rules });
            vmap.push(format!("{i} : goto {ep_chain}"));
        }
        svc_rules.push(format!("numgen random mod {} vmap {{ {} }}", eps.len(), vmap.join(", ")));
        r.chains.insert(svc_chain.clone(), Chain { base: None, rules: svc_rules });
        svc_chain
    }
}

impl ServiceRules {
    /// One Service's rules: the map elements and chains of its ports. None if nothing of it can
    /// be programmed (headless, ExternalName, IPv6, no usable port).
    fn compute(config: &RulesConfig, svc: &Service, slices: &impl ServiceSlices) -> Option<ServiceRules> {
        let spec = svc.spec.as_ref()?;
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if kind == "ExternalName" {
            return None;
        }
        // headless ("None"), unallocated or IPv6
        let cluster_ip = spec.cluster_ip.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok())?;
        let (ns, name) = (svc.namespace(), svc.name());
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref()?.timeout_seconds)
                .and_then(|t| u64::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        let with_node_ports = kind == "NodePort" || kind == "LoadBalancer";
        let known_node = config.node_name.is_some();
        let internal_local = known_node && spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = known_node && spec.external_traffic_policy.as_deref() == Some("Local");
        let endpoints = ServiceEndpoints::collect(slices, ns, name, config.node_name.as_deref());
        let empty = (Endpoints::new(), Endpoints::new());
        let mut r = ServiceRules::default();
        for port in spec.ports.iter().flatten() {
            // 0: the port is unset (the API requires 1-65535).
            let (Some(proto), Ok(number @ 1..)) = (protocol(port.protocol.as_deref()), u16::try_from(port.port)) else {
                continue;
            };
            let port_name = port.name.as_deref().unwrap_or("");
            let node_port = port.node_port.and_then(|n| u16::try_from(n).ok()).filter(|_| with_node_ports);
            let (ready, terminating) = endpoints.by_port.get(&(port_name.to_string(), proto)).unwrap_or(&empty);
            let usable = if ready.is_empty() { terminating } else { ready };
            // This node's endpoints, with the same fallback to terminating ones.
            let local_of = |set: &Endpoints| -> Endpoints {
                set.iter().filter(|(ip, _)| endpoints.local.contains(ip)).copied().collect()
            };
            let local_ready = local_of(ready);
            let local = if local_ready.is_empty() { local_of(terminating) } else { local_ready };
            r.service_ports += 1;
            let id = format!(
                "{ns}/{name}/{proto}/{}",
                if port_name.is_empty() { number.to_string() } else { port_name.to_string() }
            );
            let reject = "goto reject-chain";
            if usable.is_empty() {
                r.element("no-endpoint-services", format!("{cluster_ip} . {proto} . {number} : {reject}"));
                if let Some(np) = node_port {
                    r.element("no-endpoint-nodeports", format!("{proto} . {np} : {reject}"));
                }
                continue;
            }
            r.endpoints += usable.len();
            if proto == "udp" {
                for (ip, _) in usable.iter() {
                    r.udp_flows.insert(UdpFlow { dst: Some(cluster_ip), port: number, endpoint: *ip });
                    if let Some(np) = node_port {
                        r.udp_flows.insert(UdpFlow { dst: None, port: np, endpoint: *ip });
                    }
                }
            }
            let balance = Balance { id: &id, proto, affinity };
            // Each balancing chain is built once, when something jumps to it.
            let cluster =
                (!internal_local || node_port.is_some()).then(|| balance.cluster_chain(&mut r, usable, config));
            let local_chain = ((internal_local || (external_local && node_port.is_some())) && !local.is_empty())
                .then(|| balance.local_chain(&mut r, &local));
            match (internal_local, &cluster, &local_chain) {
                (false, Some(chain), _) | (true, _, Some(chain)) => {
                    r.element("service-ips", format!("{cluster_ip} . {proto} . {number} : goto {chain}"))
                }
                _ => r.element("no-endpoint-services", format!("{cluster_ip} . {proto} . {number} : {reject}")),
            }
            let (Some(np), Some(cluster)) = (node_port, cluster) else { continue };
            let ext_chain = format!("external-{}-{id}", hash_prefix(&id));
            let rules = if !external_local {
                // NodePort traffic comes from anywhere: masquerade so that replies return
                // through this node.
                vec!["jump mark-for-masquerade".to_string(), format!("goto {cluster}")]
            } else {
                // Pods and this node itself are not "external": they keep the cluster-wide
                // behaviour (the node's own traffic needs masquerading to come back).
                let mut rules = vec![];
                if let Some(cidr) = &config.cluster_cidr {
                    rules.push(format!("ip saddr {cidr} goto {cluster}"));
                }
                rules.push("fib saddr type local jump mark-for-masquerade".to_string());
                rules.push(format!("fib saddr type local goto {cluster}"));
                rules.push(local_chain.map_or("drop".to_string(), |chain| format!("goto {chain}")));
                rules
            };
            r.chains.insert(ext_chain.clone(), Chain { base: None, rules });
            r.element("service-nodeports", format!("{proto} . {np} : goto {ext_chain}"));
        }
        (r.service_ports > 0).then_some(r)
    }

    fn element(&mut self, map: &'static str, element: String) {
        self.elements.entry(map).or_default().insert(element);
    }

    fn elements(&self, map: &str) -> impl Iterator<Item = &str> {
        self.elements.get(map).into_iter().flatten().map(String::as_str)
    }
}

/// `add set` of an affinity set.
fn declare_set(out: &mut String, t: &str, name: &str, timeout: u64) {
    let _ = writeln!(out, "add set ip {t} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}");
}

fn declare_maps(out: &mut String, t: &str) {
    for (name, ty) in MAPS {
        let _ = writeln!(out, "add map ip {t} {name} {{ type {ty}; }}");
    }
}

fn declare_chain(out: &mut String, t: &str, name: &str, chain: &Chain) {
    match &chain.base {
        Some(base) => {
            let _ = writeln!(out, "add chain ip {t} {name} {{ {base} }}");
        }
        None => {
            let _ = writeln!(out, "add chain ip {t} {name}");
        }
    }
}

fn chain_rules(out: &mut String, t: &str, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        let _ = writeln!(out, "add rule ip {t} {name} {rule}");
    }
}

impl ProxyRules {
    /// The base chains alone (no Service yet), for `config`.
    pub fn new(config: &RulesConfig) -> Result<ProxyRules, RulesError> {
        if !valid_identifier(&config.table) {
            return Err(RulesError::InvalidTable(config.table.clone()));
        }
        if let Some(c) = &config.cluster_cidr {
            parse_cidr(c)?;
        }
        let mut r = ProxyRules {
            config: config.clone(),
            base: BTreeMap::new(),
            services: BTreeMap::new(),
            service_ports: 0,
            endpoints: 0,
        };
        r.base_chains();
        Ok(r)
    }

    /// Computes the ruleset for `services` and their EndpointSlices. Objects that cannot be
    /// programmed (headless, ExternalName, IPv6, unknown protocols) are skipped.
    pub fn compute<S: Borrow<Service>>(
        config: &RulesConfig,
        services: &[S],
        slices: &impl ServiceSlices,
    ) -> Result<ProxyRules, RulesError> {
        let mut r = ProxyRules::new(config)?;
        r.update(&ServiceChanges::all(), &ServiceList::new(services), slices);
        Ok(r)
    }

    /// Recomputes the rules of the Services `changes` marks (every one, and dropping those
    /// gone, when it marks everything) from `services` and their slices, and returns what
    /// changed. The cost follows the number of marked Services, not of all Services.
    pub fn update(
        &mut self,
        changes: &ServiceChanges,
        services: &impl Services,
        slices: &impl ServiceSlices,
    ) -> RulesUpdate {
        let mut update = RulesUpdate { table: self.config.table.clone(), changed: Vec::new(), recomputed: 0 };
        let config = &self.config;
        let compute = |svc: &Service| ServiceRules::compute(config, svc, slices).map(Arc::new);
        if changes.is_all() {
            let mut fresh = BTreeMap::new();
            services.for_each(&mut |svc| {
                update.recomputed += 1;
                if let Some(rules) = compute(svc) {
                    fresh.insert(svc.key(), rules);
                }
            });
            let old = std::mem::take(&mut self.services);
            for (key, before) in &old {
                match fresh.get(key) {
                    Some(after) if after == before => {}
                    after => update.changed.push((Some(before.clone()), after.cloned())),
                }
            }
            update
                .changed
                .extend(fresh.iter().filter(|(k, _)| !old.contains_key(*k)).map(|(_, r)| (None, Some(r.clone()))));
            self.services = fresh;
        } else {
            for key in changes.keys() {
                update.recomputed += 1;
                let mut after = None;
                services.with(&key.0, &key.1, &mut |svc| after = svc.and_then(compute));
                let before = match &after {
                    Some(rules) => self.services.insert(key.clone(), rules.clone()),
                    None => self.services.remove(key),
                };
                if before != after {
                    update.changed.push((before, after));
                }
            }
        }
        for (before, after) in &update.changed {
            if let Some(b) = before {
                self.service_ports -= b.service_ports;
                self.endpoints -= b.endpoints;
            }
            if let Some(a) = after {
                self.service_ports += a.service_ports;
                self.endpoints += a.endpoints;
            }
        }
        update
    }

    fn chain(&mut self, name: &str, base: Option<&str>, rules: &[&str]) {
        let chain = Chain { base: base.map(str::to_string), rules: rules.iter().map(|r| r.to_string()).collect() };
        self.base.insert(name.to_string(), chain);
    }

    fn base_chains(&mut self) {
        // NodePorts answer on every local address (fib), loopback only when asked for.
        let local = if self.config.localhost_nodeports {
            "fib daddr type local".to_string()
        } else {
            "fib daddr type local ip daddr != 127.0.0.0/8".to_string()
        };
        self.chain("nat-prerouting", Some("type nat hook prerouting priority dstnat;"), &["jump services"]);
        self.chain("nat-output", Some("type nat hook output priority -100;"), &["jump services"]);
        self.chain("nat-postrouting", Some("type nat hook postrouting priority srcnat;"), &["jump masquerading"]);
        let services_rules = [
            "ip daddr . meta l4proto . th dport vmap @service-ips".to_string(),
            format!("{local} meta l4proto . th dport vmap @service-nodeports"),
        ];
        self.chain("services", None, &services_rules.iter().map(String::as_str).collect::<Vec<_>>());
        let mark = format!("meta mark set meta mark | {MASQUERADE_MARK:#x}");
        self.chain("mark-for-masquerade", None, &[&mark]);
        let masq = [
            format!("meta mark & {MASQUERADE_MARK:#x} == 0 return"),
            format!("meta mark set meta mark ^ {MASQUERADE_MARK:#x}"),
            "masquerade fully-random".to_string(),
        ];
        self.chain("masquerading", None, &masq.iter().map(String::as_str).collect::<Vec<_>>());
        // Filter hooks run before nat's dstnat (priority -110 < -100), so only packets to a
        // service without endpoints ever reach these maps' verdicts.
        let check = "ct state new jump service-endpoints-check";
        let mut input = vec![];
        let martian;
        if self.config.localhost_nodeports {
            // route_localnet would let outside packets addressed to 127/8 in (CVE-2020-8558):
            // drop those unless they are replies or DNATed by us.
            martian = "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status & dnat == 0 drop".to_string();
            input.push(martian.as_str());
        }
        input.push(check);
        self.chain("filter-input", Some("type filter hook input priority -110;"), &input);
        self.chain("filter-forward", Some("type filter hook forward priority -110;"), &[check]);
        self.chain("filter-output", Some("type filter hook output priority -110;"), &[check]);
        let no_ep_nodeports = format!("{local} meta l4proto . th dport vmap @no-endpoint-nodeports");
        self.chain(
            "service-endpoints-check",
            None,
            &["ip daddr . meta l4proto . th dport vmap @no-endpoint-services", &no_ep_nodeports],
        );
        self.chain("reject-chain", None, &["meta l4proto tcp reject with tcp reset", "reject"]);
    }

    pub fn table(&self) -> &str {
        &self.config.table
    }

    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// Service ports programmed (with or without endpoints).
    pub fn service_ports(&self) -> usize {
        self.service_ports
    }

    /// Endpoint chains programmed (one per service port and endpoint).
    pub fn endpoints(&self) -> usize {
        self.endpoints
    }

    /// An `nft -f` script that replaces the table wholesale (first sync, or after an error):
    /// create-then-delete makes the delete valid whether or not the table exists, all in one
    /// transaction.
    pub fn full_text(&self) -> String {
        let t = &self.config.table;
        let mut out = format!("add table ip {t}\ndelete table ip {t}\nadd table ip {t}\n");
        let services = || self.services.values();
        for (name, timeout) in services().flat_map(|s| &s.affinity_sets) {
            declare_set(&mut out, t, name, *timeout);
        }
        declare_maps(&mut out, t);
        for (name, chain) in self.base.iter().chain(services().flat_map(|s| &s.chains)) {
            declare_chain(&mut out, t, name, chain);
        }
        for (map, _) in MAPS {
            let elements: Vec<&str> = services().flat_map(|s| s.elements(map)).collect();
            if !elements.is_empty() {
                let _ = writeln!(out, "add element ip {t} {map} {{ {} }}", elements.join(", "));
            }
        }
        for (name, chain) in self.base.iter().chain(services().flat_map(|s| &s.chains)) {
            chain_rules(&mut out, t, name, chain);
        }
        out
    }
}

/// One Service's rules; None: it has nothing programmed.
type Rules = Option<Arc<ServiceRules>>;

/// What one [`ProxyRules::update`] changed: the rules of the Services that differ, before and
/// after.
#[derive(Debug, Default)]
pub struct RulesUpdate {
    table: String,
    /// (before, after) per changed Service.
    changed: Vec<(Rules, Rules)>,
    recomputed: usize,
}

impl RulesUpdate {
    /// Nothing changed: the kernel already holds the rules.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    /// Services whose rules were recomputed.
    pub fn recomputed(&self) -> usize {
        self.recomputed
    }

    /// Services whose rules changed.
    pub fn changed(&self) -> usize {
        self.changed.len()
    }

    fn pairs(&self) -> impl Iterator<Item = (&ServiceRules, &ServiceRules)> {
        static NONE: std::sync::LazyLock<ServiceRules> = std::sync::LazyLock::new(ServiceRules::default);
        self.changed.iter().map(|(b, a)| (b.as_deref().unwrap_or(&NONE), a.as_deref().unwrap_or(&NONE)))
    }

    /// UDP flows the changed Services DNATed that they no longer do: their conntrack entries
    /// are stale.
    pub fn stale_udp_flows(&self) -> Vec<UdpFlow> {
        let before: BTreeSet<UdpFlow> = self.pairs().flat_map(|(b, _)| b.udp_flows.iter().copied()).collect();
        let after: BTreeSet<UdpFlow> = self.pairs().flat_map(|(_, a)| a.udp_flows.iter().copied()).collect();
        before.difference(&after).copied().collect()
    }

    /// An `nft -f` script moving the table from the rules before this update (what the kernel
    /// holds) to those after, in one transaction touching only the changed Services, as
    /// upstream does: an endpoint change rewrites one service chain and adds/deletes a few
    /// chains and map elements. Affinity sets that stay are never recreated (that would forget
    /// every client's endpoint).
    pub fn text(&self) -> String {
        let t = &self.table;
        let mut out = format!("add table ip {t}\n");
        for (before, after) in self.pairs() {
            for (name, timeout) in after.affinity_sets.iter().filter(|(n, _)| !before.affinity_sets.contains_key(*n)) {
                declare_set(&mut out, t, name, *timeout);
            }
        }
        declare_maps(&mut out, t);
        // New chains are declared before any rule or map element may jump to them; changed
        // ones are flushed and rewritten.
        let mut rules = String::new();
        for (before, after) in self.pairs() {
            for (name, chain) in &after.chains {
                match before.chains.get(name) {
                    Some(old) if old == chain => continue,
                    Some(_) => {
                        let _ = writeln!(out, "flush chain ip {t} {name}");
                    }
                    None => declare_chain(&mut out, t, name, chain),
                }
                chain_rules(&mut rules, t, name, chain);
            }
        }
        out.push_str(&rules);
        // Every delete before any add, across the changed Services: a ClusterIP or NodePort
        // may pass from a deleted Service to a new one in the same sync. Elements are
        // "key : verdict": a changed verdict is a delete of the old element (by key) and an add
        // of the new one.
        for (map, _) in MAPS {
            let old: BTreeSet<&str> = self.pairs().flat_map(|(b, _)| b.elements(map)).collect();
            let new: BTreeSet<&str> = self.pairs().flat_map(|(_, a)| a.elements(map)).collect();
            let gone: Vec<&str> = old.difference(&new).filter_map(|e| e.split_once(" : ").map(|(k, _)| k)).collect();
            if !gone.is_empty() {
                let _ = writeln!(out, "delete element ip {t} {map} {{ {} }}", gone.join(", "));
            }
            let added: Vec<&str> = new.difference(&old).copied().collect();
            if !added.is_empty() {
                let _ = writeln!(out, "add element ip {t} {map} {{ {} }}", added.join(", "));
            }
        }
        let stale: Vec<&String> =
            self.pairs().flat_map(|(b, a)| b.chains.keys().filter(|c| !a.chains.contains_key(*c))).collect();
        for name in &stale {
            let _ = writeln!(out, "flush chain ip {t} {name}");
        }
        for name in &stale {
            let _ = writeln!(out, "delete chain ip {t} {name}");
        }
        for (before, after) in self.pairs() {
            for name in before.affinity_sets.keys().filter(|s| !after.affinity_sets.contains_key(*s)) {
                let _ = writeln!(out, "delete set ip {t} {name}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
