//! ClusterIP and NodePort allocation for Services, done where upstream does it: in the
//! API server's create path, so `kubectl create service` answers with the IP. Every
//! allocation is an object in the store (an IPAddress, or a port reservation) created with
//! create-if-absent, so any number of API servers never hand out the same IP or port twice.

use crate::error::{OrStatus, Target};
use bytes::Bytes;
use kubus_apimachinery::{Cause, StatusError};
use kubus_bus::{Key, Store, StoreError};
use serde_json::{json, Value};
use std::net::Ipv4Addr;

#[derive(Debug, Clone)]
pub struct ServiceRanges {
    /// Service CIDR (IPv4), e.g. 10.96.0.0/12.
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges { network: Ipv4Addr::new(10, 96, 0, 0), prefix: 12, node_ports: (30000, 32767) }
    }
}

impl ServiceRanges {
    pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
        let (ip, p) = cidr.split_once('/')?;
        Some((ip.parse().ok()?, p.parse().ok().filter(|p| *p <= 30)?))
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix as u32)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix as u32);
        u32::from(ip) & mask == u32::from(self.network) & mask
    }

    /// The `kubernetes` Service's address: the first of the range.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

fn ip_key(ip: &str) -> Key {
    Key::new("networking.k8s.io", "ipaddresses", None, ip)
}

fn port_key(port: i64) -> Key {
    Key::new("kubus.io", "servicenodeports", None, &port.to_string())
}

fn random_u32() -> u32 {
    let b = uuid::Uuid::new_v4();
    let b = b.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Reserves `key` for `owner`; false if taken.
async fn reserve(store: &Store, key: &Key, body: Value) -> Result<bool, StatusError> {
    match store.create(key, Bytes::from(body.to_string())).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e).or_status(Target::Reservation),
    }
}

async fn release(store: &Store, key: &Key) {
    if let Ok(Some(o)) = store.get(key).await {
        let _ = store.delete(key, o.value, o.revision).await;
    }
}

fn ip_object(ip: &str, ns: &str, name: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1beta1", "kind": "IPAddress", "metadata": {"name": ip},
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": ns, "name": name}}})
}

/// What the server hands out from ranges (ClusterIPs, node ports), with the store that records
/// each reservation.
#[derive(Clone)]
pub struct Allocator {
    store: Store,
    ranges: ServiceRanges,
}

impl Allocator {
    pub fn new(store: Store, ranges: ServiceRanges) -> Allocator {
        Allocator { store, ranges }
    }

    pub fn ranges(&self) -> &ServiceRanges {
        &self.ranges
    }

    /// Fills in spec.clusterIP(s) and node ports of a new Service; returns what was reserved,
    /// so that a failed create can give it back.
    pub async fn allocate_service(&self, svc: &mut Value) -> Result<Vec<Key>, StatusError> {
        allocate(&self.store, &self.ranges, svc).await
    }

    /// Gives reservations back (after a failed create, or with the object that held them).
    pub async fn release(&self, keys: &[Key]) {
        for k in keys {
            release(&self.store, k).await;
        }
    }
}

async fn allocate(store: &Store, ranges: &ServiceRanges, svc: &mut Value) -> Result<Vec<Key>, StatusError> {
    let ns = svc["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
    let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let kind = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
    let mut reserved = Vec::new();
    let result = async {
        if kind != "ExternalName" {
            match svc["spec"]["clusterIP"].as_str().unwrap_or("") {
                "None" => {}
                "" => {
                    let size = ranges.size();
                    let start = random_u32() % size;
                    let mut found = None;
                    // Skip the network and first addresses (the first is the kubernetes Service's).
                    for i in 0..size {
                        let offset = (start + i) % size;
                        if offset < 2 || offset == size - 1 {
                            continue;
                        }
                        let ip = Ipv4Addr::from(u32::from(ranges.network) + offset).to_string();
                        if reserve(store, &ip_key(&ip), ip_object(&ip, &ns, &name)).await? {
                            reserved.push(ip_key(&ip));
                            found = Some(ip);
                            break;
                        }
                    }
                    let ip = found.ok_or_else(|| {
                        StatusError::internal("failed to allocate a serviceIP: range is full")
                    })?;
                    svc["spec"]["clusterIP"] = json!(ip);
                    svc["spec"]["clusterIPs"] = json!([ip]);
                }
                requested => {
                    let ok = requested.parse::<Ipv4Addr>().ok().filter(|ip| ranges.contains(*ip));
                    if ok.is_none() {
                        return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid(
                            "spec.clusterIPs",
                            &json!(requested),
                            format!("failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}/{}", ranges.network, ranges.prefix),
                        )]));
                    }
                    if !reserve(store, &ip_key(requested), ip_object(requested, &ns, &name)).await? {
                        return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid(
                            "spec.clusterIPs",
                            &json!(requested),
                            format!("failed to allocate IP {requested}: provided IP is already allocated"),
                        )]));
                    }
                    reserved.push(ip_key(requested));
                    svc["spec"]["clusterIPs"] = json!([requested]);
                }
            }
        }
        if kind == "NodePort" || kind == "LoadBalancer" {
            let (lo, hi) = ranges.node_ports;
            let span = (hi - lo + 1) as u32;
            let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
            let mut out = Vec::new();
            for (i, mut p) in ports.into_iter().enumerate() {
                let owner = json!({"service": format!("{ns}/{name}")});
                match p["nodePort"].as_i64().filter(|n| *n != 0) {
                    Some(n) => {
                        if n < lo as i64 || n > hi as i64 {
                            return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid(
                                format!("spec.ports[{i}].nodePort"), &json!(n), format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"))]));
                        }
                        if !reserve(store, &port_key(n), owner).await? {
                            return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid(
                                format!("spec.ports[{i}].nodePort"), &json!(n), "provided port is already allocated")]));
                        }
                        reserved.push(port_key(n));
                    }
                    None => {
                        let start = random_u32() % span;
                        let mut got = None;
                        for k in 0..span {
                            let n = lo as i64 + ((start + k) % span) as i64;
                            if reserve(store, &port_key(n), owner.clone()).await? {
                                reserved.push(port_key(n));
                                got = Some(n);
                                break;
                            }
                        }
                        p["nodePort"] = json!(got.ok_or_else(|| StatusError::internal("failed to allocate a nodePort: range is full"))?);
                    }
                }
                out.push(p);
            }
            svc["spec"]["ports"] = Value::Array(out);
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(reserved),
        Err(e) => {
            for k in &reserved {
                release(store, k).await;
            }
            Err(e)
        }
    }
}

/// What a Service holds, for release when it is deleted.
pub fn held_by(svc: &Value) -> Vec<Key> {
    let mut keys: Vec<Key> = svc["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|ip| *ip != "None")
        .map(ip_key)
        .collect();
    for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(n) = p["nodePort"].as_i64().filter(|n| *n != 0) {
            keys.push(port_key(n));
        }
    }
    keys
}
