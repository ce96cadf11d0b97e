//! The in-memory index of Services and EndpointSlices that answers are computed from, and the
//! pure `Resolver` turning a question into records (no sockets, no NATS: tests drive it directly).
//!
//! Records follow the Kubernetes DNS-Based Service Discovery specification
//! (kubernetes/dns docs/specification.md) and CoreDNS's kubernetes plugin where the
//! specification leaves room (SOA in the authority section of negative answers, ip-dashed
//! hostnames for endpoints without `hostname`, `pods insecure` pod records).

use crate::metrics::INDEX_SERVICES;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::informer::indexes::SERVICE_NAME_LABEL;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("invalid cluster domain {domain:?}: {reason}")]
    Domain { domain: String, reason: String },
}

/// CoreDNS's kubernetes plugin default TTL ("The default is 5 seconds", plugin/kubernetes
/// README, `ttl`); it applies to service, endpoint and pod records alike.
pub const DEFAULT_TTL: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
struct PortEntry {
    name: String,
    protocol: String,
    port: u16,
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    cluster_ips: Vec<IpAddr>,
    headless: bool,
    external_name: Option<String>,
    publish_not_ready: bool,
    ports: Vec<PortEntry>,
}

#[derive(Debug, Clone)]
struct EndpointEntry {
    ip: IpAddr,
    hostname: Option<String>,
    ready: bool,
}

#[derive(Debug, Clone)]
struct SliceEntry {
    service: String,
    endpoints: Vec<EndpointEntry>,
    ports: Vec<PortEntry>,
}

/// Services and their EndpointSlices keyed for lookups by name: a query touches one Service
/// and that Service's slices, never every object.
#[derive(Debug, Default)]
pub struct DnsIndex {
    services: HashMap<(String, String), ServiceEntry>,
    /// (namespace, slice name) -> slice
    slices: HashMap<(String, String), SliceEntry>,
    /// (namespace, service name) -> its slices' names
    slices_by_service: HashMap<(String, String), BTreeSet<String>>,
    /// namespace -> number of Services in it (so `<ns>.svc.<zone>` exists only if it has any)
    namespaces: HashMap<String, usize>,
    /// ClusterIP -> (namespace, service name), for PTR queries
    reverse: HashMap<IpAddr, (String, String)>,
    /// SOA serial: the Unix time of the last change, as CoreDNS does.
    serial: u32,
    synced: bool,
}

/// (namespace, lowercased name): DNS names are case-insensitive.
fn key_of(obj: &impl ObjectExt) -> (String, String) {
    (obj.namespace().to_string(), obj.name().to_ascii_lowercase())
}

/// A named port (SRV records need a name); unnamed or out-of-range ones are left out.
fn port_entry(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<PortEntry> {
    Some(PortEntry {
        name: name.filter(|n| !n.is_empty())?.to_ascii_lowercase(),
        protocol: protocol.unwrap_or("TCP").to_ascii_lowercase(),
        port: u16::try_from(port?).ok()?,
    })
}

fn now_serial() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1)
}

impl DnsIndex {
    pub fn new() -> Self {
        DnsIndex { serial: now_serial(), ..Default::default() }
    }

    /// Marks the index as filled from the informers' first list: until then answers in the
    /// cluster domain are SERVFAIL, so clients retry instead of caching a false NXDOMAIN.
    pub fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    fn touch(&mut self) {
        // Serials must grow for secondaries; two changes in one second still get distinct ones.
        self.serial = now_serial().max(self.serial.wrapping_add(1));
        INDEX_SERVICES.set(self.services.len() as i64);
    }

    pub fn apply_service(&mut self, svc: &Service) {
        let key = key_of(svc);
        self.remove_service_key(&key);
        let default_spec = Default::default();
        let spec = svc.spec.as_ref().unwrap_or(&default_spec);
        let mut cluster_ips: Vec<IpAddr> = spec.cluster_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
        if cluster_ips.is_empty() {
            cluster_ips.extend(spec.cluster_ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok()));
        }
        let external_name =
            (spec.type_.as_deref() == Some("ExternalName")).then(|| spec.external_name.clone()).flatten();
        let entry = ServiceEntry {
            headless: spec.cluster_ip.as_deref() == Some("None") && external_name.is_none(),
            cluster_ips,
            external_name,
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
            ports: (spec.ports.iter().flatten())
                .filter_map(|p| port_entry(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
                .collect(),
        };
        for ip in &entry.cluster_ips {
            self.reverse.insert(*ip, key.clone());
        }
        *self.namespaces.entry(key.0.clone()).or_default() += 1;
        self.services.insert(key, entry);
        self.touch();
    }

    pub fn remove_service(&mut self, svc: &Service) {
        let key = key_of(svc);
        if self.remove_service_key(&key) {
            self.touch();
        }
    }

    fn remove_service_key(&mut self, key: &(String, String)) -> bool {
        let Some(old) = self.services.remove(key) else {
            return false;
        };
        for ip in &old.cluster_ips {
            if self.reverse.get(ip) == Some(key) {
                self.reverse.remove(ip);
            }
        }
        if let Some(n) = self.namespaces.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.namespaces.remove(&key.0);
            }
        }
        true
    }

    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let (ns, name) = key_of(slice);
        self.remove_slice_key(&ns, &name);
        let Some(service) = slice.label(SERVICE_NAME_LABEL) else {
            return;
        };
        let service = service.to_ascii_lowercase();
        let endpoints = slice
            .endpoints
            .iter()
            .flat_map(|ep| {
                // `ready` unset means ready (EndpointConditions docs); terminating ones are not.
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                let hostname = ep.hostname.as_deref().filter(|h| !h.is_empty()).map(str::to_ascii_lowercase);
                ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()).map(move |ip| EndpointEntry {
                    ip,
                    hostname: hostname.clone(),
                    ready,
                })
            })
            .collect();
        let ports = (slice.ports.iter().flatten())
            .filter_map(|p| port_entry(p.name.as_deref(), p.protocol.as_deref(), p.port))
            .collect();
        let entry = SliceEntry { service: service.clone(), endpoints, ports };
        self.slices_by_service.entry((ns.clone(), service)).or_default().insert(name.clone());
        self.slices.insert((ns, name), entry);
        self.touch();
    }

    pub fn remove_slice(&mut self, slice: &EndpointSlice) {
        let (ns, name) = key_of(slice);
        if self.remove_slice_key(&ns, &name) {
            self.touch();
        }
    }

    fn remove_slice_key(&mut self, ns: &str, name: &str) -> bool {
        let key = (ns.to_string(), name.to_string());
        let Some(old) = self.slices.remove(&key) else {
            return false;
        };
        let svc_key = (key.0, old.service);
        if let Some(set) = self.slices_by_service.get_mut(&svc_key) {
            set.remove(name);
            if set.is_empty() {
                self.slices_by_service.remove(&svc_key);
            }
        }
        true
    }

    /// Replaces everything with the informers' current lists.
    pub fn rebuild<'a>(
        &mut self,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) {
        let (serial, synced) = (self.serial, self.synced);
        *self = DnsIndex { serial, synced, ..Default::default() };
        for s in services {
            self.apply_service(s);
        }
        for s in slices {
            self.apply_slice(s);
        }
        self.touch();
    }

    /// Endpoints that DNS publishes for a Service, deduplicated by IP in a stable order.
    fn published_endpoints(&self, ns: &str, svc: &str, entry: &ServiceEntry) -> Vec<(&EndpointEntry, &SliceEntry)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let Some(names) = self.slices_by_service.get(&(ns.to_string(), svc.to_string())) else {
            return out;
        };
        for name in names {
            let Some(slice) = self.slices.get(&(ns.to_string(), name.clone())) else {
                continue;
            };
            for ep in &slice.endpoints {
                if (ep.ready || entry.publish_not_ready) && seen.insert(ep.ip) {
                    out.push((ep, slice));
                }
            }
        }
        out
    }
}

/// What to do with a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Answered from the cluster's data (authoritative).
    Local { rcode: ResponseCode, answers: Vec<Record>, additionals: Vec<Record>, soa: Option<Box<Record>> },
    /// Not ours: ask the upstream resolvers.
    Forward,
}

/// The endpoint's DNS label: its `hostname`, else the IP with dashes (what CoreDNS uses).
fn endpoint_label(ep: &EndpointEntry) -> String {
    ep.hostname.clone().unwrap_or_else(|| match ep.ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    })
}

/// Answers questions from a shared `DnsIndex`. Cloning is cheap and shares the index.
#[derive(Clone)]
pub struct Resolver {
    zone: Name,
    zone_labels: Vec<String>,
    ttl: u32,
    index: Arc<RwLock<DnsIndex>>,
}

impl Resolver {
    pub fn new(domain: &str, ttl: u32) -> Result<Resolver, IndexError> {
        let err = |reason: String| IndexError::Domain { domain: domain.to_string(), reason };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Err(err("empty".into()));
        }
        let zone = Name::from_ascii(format!("{domain}.")).map_err(|e| err(e.to_string()))?;
        let zone_labels = domain.split('.').map(str::to_string).collect();
        Ok(Resolver { zone, zone_labels, ttl, index: Arc::new(RwLock::new(DnsIndex::new())) })
    }

    pub fn index(&self) -> &Arc<RwLock<DnsIndex>> {
        &self.index
    }

    pub fn zone(&self) -> &Name {
        &self.zone
    }

    fn name(&self, relative: &[&str]) -> Name {
        let rel = relative.join(".");
        // Labels come from the question or from validated API objects; a bad one makes no record.
        Name::from_ascii(format!("{rel}."))
            .and_then(|n| n.append_domain(&self.zone))
            .unwrap_or_else(|_| self.zone.clone())
    }

    fn soa(&self, serial: u32) -> Record {
        let soa = SOA::new(self.name(&["ns", "dns"]), self.name(&["hostmaster"]), serial, 7200, 1800, 86400, self.ttl);
        Record::from_rdata(self.zone.clone(), self.ttl, RData::SOA(soa))
    }

    fn record(&self, name: Name, rdata: RData) -> Record {
        Record::from_rdata(name, self.ttl, rdata)
    }

    fn ip_record(&self, name: Name, ip: IpAddr) -> Record {
        match ip {
            IpAddr::V4(v4) => self.record(name, RData::A(A(v4))),
            IpAddr::V6(v6) => self.record(name, RData::AAAA(AAAA(v6))),
        }
    }

    /// The answer to `qname`/`qtype`.
    pub fn resolve(&self, qname: &Name, qtype: RecordType) -> Answer {
        let labels: Vec<String> =
            qname.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect::<Vec<_>>();
        let index = self.index.read().expect("dns index lock");
        let n = labels.len();
        let z = self.zone_labels.len();
        if n < z || labels[n - z..] != self.zone_labels[..] {
            return self.reverse(&index, &labels, qtype);
        }
        if !index.synced {
            return Answer::Local { rcode: ResponseCode::ServFail, answers: vec![], additionals: vec![], soa: None };
        }
        let rest: Vec<&str> = labels[..n - z].iter().map(String::as_str).collect();
        let soa = self.soa(index.serial);
        let nxdomain = || Answer::Local {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            additionals: vec![],
            soa: Some(Box::new(soa.clone())),
        };
        let reply = |answers: Vec<Record>, additionals: Vec<Record>| {
            let soa = answers.is_empty().then(|| Box::new(soa.clone()));
            Answer::Local { rcode: ResponseCode::NoError, answers, additionals, soa }
        };
        // Owner names keep the question's spelling: resolvers using DNS 0x20 compare them exactly.
        let qname = qname.clone();
        let wants_ip = |ip: &IpAddr| {
            matches!(
                (qtype, ip),
                (RecordType::A | RecordType::ANY, IpAddr::V4(_)) | (RecordType::AAAA | RecordType::ANY, IpAddr::V6(_))
            )
        };
        match rest.as_slice() {
            [] => match qtype {
                RecordType::SOA => reply(vec![soa.clone()], vec![]),
                RecordType::NS => reply(vec![self.record(qname, RData::NS(NS(self.name(&["ns", "dns"]))))], vec![]),
                _ => reply(vec![], vec![]),
            },
            ["svc"] | ["pod"] | [_, "pod"] => reply(vec![], vec![]),
            [ns, "svc"] => {
                if index.namespaces.contains_key(*ns) {
                    reply(vec![], vec![])
                } else {
                    nxdomain()
                }
            }
            [svc, ns, "svc"] => {
                let Some(entry) = index.services.get(&(ns.to_string(), svc.to_string())) else {
                    return nxdomain();
                };
                if let Some(target) = &entry.external_name {
                    return match Name::from_ascii(format!("{}.", target.trim_end_matches('.'))) {
                        Ok(t) if qtype != RecordType::SRV => {
                            reply(vec![self.record(qname, RData::CNAME(CNAME(t)))], vec![])
                        }
                        _ => reply(vec![], vec![]),
                    };
                }
                let ips: Vec<IpAddr> = if entry.headless {
                    index.published_endpoints(ns, svc, entry).into_iter().map(|(ep, _)| ep.ip).collect()
                } else {
                    entry.cluster_ips.clone()
                };
                reply(ips.into_iter().filter(wants_ip).map(|ip| self.ip_record(qname.clone(), ip)).collect(), vec![])
            }
            [host, svc, ns, "svc"] => {
                let Some(entry) = index.services.get(&(ns.to_string(), svc.to_string())).filter(|e| e.headless) else {
                    return nxdomain();
                };
                let eps = index.published_endpoints(ns, svc, entry);
                let matching: Vec<IpAddr> =
                    eps.iter().filter(|(ep, _)| endpoint_label(ep) == *host).map(|(ep, _)| ep.ip).collect();
                if matching.is_empty() {
                    return nxdomain();
                }
                reply(
                    matching.into_iter().filter(wants_ip).map(|ip| self.ip_record(qname.clone(), ip)).collect(),
                    vec![],
                )
            }
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                let (port, proto) = (&port[1..], &proto[1..]);
                let Some(entry) = index.services.get(&(ns.to_string(), svc.to_string())) else {
                    return nxdomain();
                };
                let Some(svc_port) = entry.ports.iter().find(|p| p.name == port && p.protocol == proto) else {
                    return nxdomain();
                };
                if !matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    return reply(vec![], vec![]);
                }
                let mut answers = Vec::new();
                let mut additionals = Vec::new();
                if entry.headless {
                    let eps = index.published_endpoints(ns, svc, entry);
                    // Equal weights summing to ~100 over the endpoints, priority 0 (CoreDNS).
                    let weight = (100 / eps.len().max(1)).max(1) as u16;
                    for (ep, slice) in eps {
                        let label = endpoint_label(ep);
                        let target = self.name(&[&label, svc, ns, "svc"]);
                        // The endpoint's own port of that name (its targetPort), else the Service's.
                        let number = slice
                            .ports
                            .iter()
                            .find(|p| p.name == port && p.protocol == proto)
                            .map_or(svc_port.port, |p| p.port);
                        answers
                            .push(self.record(qname.clone(), RData::SRV(SRV::new(0, weight, number, target.clone()))));
                        additionals.push(self.ip_record(target, ep.ip));
                    }
                } else if entry.external_name.is_none() {
                    let target = self.name(&[svc, ns, "svc"]);
                    answers
                        .push(self.record(qname.clone(), RData::SRV(SRV::new(0, 100, svc_port.port, target.clone()))));
                    for ip in &entry.cluster_ips {
                        additionals.push(self.ip_record(target.clone(), *ip));
                    }
                }
                reply(answers, additionals)
            }
            [ip, _ns, "pod"] => {
                // `pods insecure` (CoreDNS's default Corefile): the name encodes the IP, which
                // is answered without checking that such a pod exists.
                match Ipv4Addr::from_str(&ip.replace('-', ".")) {
                    Ok(v4) if ip.split('-').count() == 4 => {
                        let ip = IpAddr::V4(v4);
                        reply(if wants_ip(&ip) { vec![self.ip_record(qname.clone(), ip)] } else { vec![] }, vec![])
                    }
                    _ => nxdomain(),
                }
            }
            _ => nxdomain(),
        }
    }

    /// PTR for ClusterIPs; every other reverse or foreign name goes upstream (CoreDNS's
    /// `fallthrough in-addr.arpa ip6.arpa`).
    fn reverse(&self, index: &DnsIndex, labels: &[String], qtype: RecordType) -> Answer {
        if qtype != RecordType::PTR || labels.len() != 6 || labels[4] != "in-addr" || labels[5] != "arpa" {
            return Answer::Forward;
        }
        let octets: Vec<&str> = labels[..4].iter().rev().map(String::as_str).collect();
        let Ok(ip) = octets.join(".").parse::<IpAddr>() else {
            return Answer::Forward;
        };
        match index.reverse.get(&ip) {
            Some((ns, svc)) => {
                let qname = Name::from_labels(labels.iter().map(|l| l.as_bytes())).unwrap_or_default();
                let ptr = self.record(qname, RData::PTR(PTR(self.name(&[svc, ns, "svc"]))));
                Answer::Local { rcode: ResponseCode::NoError, answers: vec![ptr], additionals: vec![], soa: None }
            }
            None => Answer::Forward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn svc(ns: &str, name: &str, cluster_ip: &str, ports: Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": cluster_ip, "ports": ports}}),
        )
        .unwrap()
    }

    fn slice(ns: &str, name: &str, service: &str, eps: Value, ports: Value) -> EndpointSlice {
        serde_json::from_value(
            json!({"metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": eps, "ports": ports}),
        )
        .unwrap()
    }

    fn ep(ip: &str, ready: bool) -> Value {
        json!({"addresses": [ip], "conditions": {"ready": ready}})
    }

    fn resolver() -> Resolver {
        let r = Resolver::new("cluster.local", DEFAULT_TTL).unwrap();
        {
            let mut i = r.index().write().unwrap();
            i.apply_service(&svc(
                "default",
                "web",
                "10.96.0.10",
                json!([{"name": "http", "port": 80, "protocol": "TCP"}]),
            ));
            i.apply_service(&svc("db", "pg", "None", json!([{"name": "sql", "port": 5432, "protocol": "TCP"}])));
            i.apply_slice(&slice(
                "db",
                "pg-abc",
                "pg",
                json!([ep("10.1.0.5", true), ep("10.1.0.6", false), {"addresses": ["10.1.0.7"], "hostname": "pg-0"}]),
                json!([{"name": "sql", "port": 15432, "protocol": "TCP"}]),
            ));
            i.set_synced(true);
        }
        r
    }

    fn q(r: &Resolver, name: &str, t: RecordType) -> (ResponseCode, Vec<String>, Vec<String>, bool) {
        match r.resolve(&Name::from_ascii(name).unwrap(), t) {
            Answer::Local { rcode, answers, additionals, soa } => (
                rcode,
                answers.iter().map(|r| r.data().to_string()).collect(),
                additionals.iter().map(|r| format!("{} {}", r.name(), r.data())).collect(),
                soa.is_some(),
            ),
            Answer::Forward => (ResponseCode::Refused, vec!["forward".into()], vec![], false),
        }
    }

    #[test]
    fn cluster_ip_service() {
        let r = resolver();
        let (rc, a, _, soa) = q(&r, "web.default.svc.cluster.local.", RecordType::A);
        assert_eq!((rc, a, soa), (ResponseCode::NoError, vec!["10.96.0.10".to_string()], false));
        // Case-insensitive, as the specification requires.
        assert_eq!(q(&r, "WEB.Default.svc.cluster.local.", RecordType::A).1, vec!["10.96.0.10"]);
        // AAAA of an IPv4-only Service: the name exists, no data, SOA for negative caching.
        let (rc, a, _, soa) = q(&r, "web.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!((rc, a.len(), soa), (ResponseCode::NoError, 0, true));
        let rec = match r.resolve(&Name::from_ascii("web.default.svc.cluster.local.").unwrap(), RecordType::A) {
            Answer::Local { answers, .. } => answers[0].clone(),
            Answer::Forward => panic!("forwarded"),
        };
        assert_eq!(rec.ttl(), 5);
    }

    #[test]
    fn headless_lists_ready_endpoints_and_follows_changes() {
        let r = resolver();
        let (rc, mut a, _, _) = q(&r, "pg.db.svc.cluster.local.", RecordType::A);
        a.sort();
        assert_eq!((rc, a), (ResponseCode::NoError, vec!["10.1.0.5".to_string(), "10.1.0.7".to_string()]));
        assert_eq!(q(&r, "pg-0.pg.db.svc.cluster.local.", RecordType::A).1, vec!["10.1.0.7"]);
        assert_eq!(q(&r, "10-1-0-5.pg.db.svc.cluster.local.", RecordType::A).1, vec!["10.1.0.5"]);
        // Not ready: not published.
        assert_eq!(q(&r, "10-1-0-6.pg.db.svc.cluster.local.", RecordType::A).0, ResponseCode::NXDomain);
        r.index().write().unwrap().apply_slice(&slice("db", "pg-abc", "pg", json!([ep("10.1.0.6", true)]), json!([])));
        assert_eq!(q(&r, "pg.db.svc.cluster.local.", RecordType::A).1, vec!["10.1.0.6"]);
        r.index().write().unwrap().remove_slice(&slice("db", "pg-abc", "pg", json!([]), json!([])));
        let (rc, a, _, soa) = q(&r, "pg.db.svc.cluster.local.", RecordType::A);
        assert_eq!((rc, a.len(), soa), (ResponseCode::NoError, 0, true));
    }

    #[test]
    fn srv_for_named_ports() {
        let r = resolver();
        let (rc, a, add, _) = q(&r, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(rc, ResponseCode::NoError);
        assert_eq!(a, vec!["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(add, vec!["web.default.svc.cluster.local. 10.96.0.10"]);
        // Headless: one per ready endpoint, the endpoint's port, hostname or ip-dashed targets.
        let (_, mut a, mut add, _) = q(&r, "_sql._tcp.pg.db.svc.cluster.local.", RecordType::SRV);
        a.sort();
        add.sort();
        assert_eq!(a, vec!["0 50 15432 10-1-0-5.pg.db.svc.cluster.local.", "0 50 15432 pg-0.pg.db.svc.cluster.local."]);
        assert_eq!(add, vec!["10-1-0-5.pg.db.svc.cluster.local. 10.1.0.5", "pg-0.pg.db.svc.cluster.local. 10.1.0.7"]);
        assert_eq!(q(&r, "_http._udp.web.default.svc.cluster.local.", RecordType::SRV).0, ResponseCode::NXDomain);
        assert_eq!(q(&r, "_nope._tcp.web.default.svc.cluster.local.", RecordType::SRV).0, ResponseCode::NXDomain);
    }

    #[test]
    fn pods_unknown_names_and_namespaces() {
        let r = resolver();
        assert_eq!(q(&r, "10-244-1-7.default.pod.cluster.local.", RecordType::A).1, vec!["10.244.1.7"]);
        assert_eq!(q(&r, "10-244-1.default.pod.cluster.local.", RecordType::A).0, ResponseCode::NXDomain);
        let (rc, _, _, soa) = q(&r, "nope.default.svc.cluster.local.", RecordType::A);
        assert_eq!((rc, soa), (ResponseCode::NXDomain, true));
        assert_eq!(q(&r, "default.svc.cluster.local.", RecordType::A).0, ResponseCode::NoError);
        assert_eq!(q(&r, "empty-ns.svc.cluster.local.", RecordType::A).0, ResponseCode::NXDomain);
        assert_eq!(q(&r, "a.b.c.d.e.f.cluster.local.", RecordType::A).0, ResponseCode::NXDomain);
        assert_eq!(q(&r, "cluster.local.", RecordType::SOA).1.len(), 1);
        assert_eq!(q(&r, "example.com.", RecordType::A).1, vec!["forward"]);
        // A name merely ending like the zone is not in it.
        assert_eq!(q(&r, "notcluster.local.", RecordType::A).1, vec!["forward"]);
    }

    #[test]
    fn ptr_for_cluster_ips_and_deletion() {
        let r = resolver();
        assert_eq!(q(&r, "10.0.96.10.in-addr.arpa.", RecordType::PTR).1, vec!["web.default.svc.cluster.local."]);
        assert_eq!(q(&r, "11.0.96.10.in-addr.arpa.", RecordType::PTR).1, vec!["forward"]);
        r.index().write().unwrap().remove_service(&svc("default", "web", "", json!([])));
        assert_eq!(q(&r, "web.default.svc.cluster.local.", RecordType::A).0, ResponseCode::NXDomain);
        assert_eq!(q(&r, "10.0.96.10.in-addr.arpa.", RecordType::PTR).1, vec!["forward"]);
        assert_eq!(r.index().read().unwrap().service_count(), 1);
    }

    #[test]
    fn unsynced_index_is_servfail_and_rebuild_replaces() {
        let r = Resolver::new("cluster.local", 5).unwrap();
        assert_eq!(q(&r, "web.default.svc.cluster.local.", RecordType::A).0, ResponseCode::ServFail);
        let s = svc("default", "web", "10.96.0.11", json!([]));
        {
            let mut i = r.index().write().unwrap();
            i.apply_service(&svc("default", "old", "10.96.0.12", json!([])));
            i.rebuild([&s], []);
            i.set_synced(true);
        }
        assert_eq!(q(&r, "web.default.svc.cluster.local.", RecordType::A).1, vec!["10.96.0.11"]);
        assert_eq!(q(&r, "old.default.svc.cluster.local.", RecordType::A).0, ResponseCode::NXDomain);
    }

    #[test]
    fn external_name_is_a_cname() {
        let r = resolver();
        r.index().write().unwrap().apply_service(
            &serde_json::from_value(json!({"metadata": {"namespace": "default", "name": "ext"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}}))
                .unwrap(),
        );
        assert_eq!(q(&r, "ext.default.svc.cluster.local.", RecordType::A).1, vec!["db.example.com."]);
    }

    #[test]
    fn dual_stack_ips_and_not_ready_addresses_when_published() {
        let r = resolver();
        {
            let mut i = r.index().write().unwrap();
            i.apply_service(
                &serde_json::from_value(json!({"metadata": {"namespace": "default", "name": "dual"},
                    "spec": {"clusterIP": "10.96.0.30", "clusterIPs": ["10.96.0.30", "fd00::30"],
                        "ports": [{"port": 80}, {"name": "web", "port": 8080, "protocol": "TCP"}]}}))
                .unwrap(),
            );
            let mut pg = svc("db", "pg", "None", json!([]));
            pg.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
            i.apply_service(&pg);
        }
        assert_eq!(q(&r, "dual.default.svc.cluster.local.", RecordType::AAAA).1, vec!["fd00::30"]);
        assert_eq!(q(&r, "30.0.96.10.in-addr.arpa.", RecordType::PTR).1, vec!["dual.default.svc.cluster.local."]);
        // Unnamed ports have no SRV name; named ones do.
        assert_eq!(q(&r, "_web._tcp.dual.default.svc.cluster.local.", RecordType::SRV).1.len(), 1);
        let (_, mut a, _, _) = q(&r, "pg.db.svc.cluster.local.", RecordType::A);
        a.sort();
        assert_eq!(a, vec!["10.1.0.5", "10.1.0.6", "10.1.0.7"]);
    }

    #[test]
    fn a_service_of_many_slices_answers_from_all_of_them() {
        // The endpoints controller splits a Service into slices of at most 100 endpoints with
        // generated names; pods on another target port are in slices of their own.
        let r = resolver();
        let eps = |range: std::ops::Range<usize>| {
            Value::Array(range.map(|i| ep(&format!("10.2.{}.{}", i / 200, i % 200 + 1), true)).collect())
        };
        let sql = |port: u16| json!([{"name": "sql", "port": port, "protocol": "TCP"}]);
        {
            let mut i = r.index().write().unwrap();
            i.apply_slice(&slice("db", "pg-x7k2p", "pg", eps(0..100), sql(15432)));
            i.apply_slice(&slice("db", "pg-b9m4q", "pg", eps(100..200), sql(15432)));
            // 10.2.1.1 is in two slices for a moment (a slice written before another shrank).
            i.apply_slice(&slice("db", "pg-t5v8w", "pg", eps(200..250), sql(25432)));
            i.apply_slice(&slice("db", "pg-zz", "pg", eps(200..201), sql(25432)));
        }
        let ips = |r: &Resolver| {
            let mut a = q(r, "pg.db.svc.cluster.local.", RecordType::A).1;
            a.sort();
            a
        };
        // Every slice's endpoints (and the original pg-abc slice's two ready ones), each once.
        assert_eq!(ips(&r).len(), 252);
        let (_, srv, _, _) = q(&r, "_sql._tcp.pg.db.svc.cluster.local.", RecordType::SRV);
        assert_eq!(srv.len(), 252);
        // Each endpoint's port is its own slice's.
        assert_eq!(srv.iter().filter(|s| s.contains(" 25432 ")).count(), 50);
        assert_eq!(srv.iter().filter(|s| s.contains(" 15432 ")).count(), 202);
        assert_eq!(q(&r, "10-2-1-1.pg.db.svc.cluster.local.", RecordType::A).1, vec!["10.2.1.1"]);
        // One slice deleted: only its endpoints go.
        r.index().write().unwrap().remove_slice(&slice("db", "pg-x7k2p", "pg", json!([]), json!([])));
        assert_eq!(ips(&r).len(), 152);
        assert_eq!(q(&r, "10-2-0-1.pg.db.svc.cluster.local.", RecordType::A).0, ResponseCode::NXDomain);
    }

    #[test]
    fn resolv_conf_without_loopback() {
        let ups = crate::upstreams_from_resolv_conf(
            "# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch x\nnameserver ::1\nnameserver 2001:db8::1\n",
        );
        assert_eq!(ups, vec!["10.0.0.2:53".parse().unwrap(), "[2001:db8::1]:53".parse().unwrap()]);
    }
}
