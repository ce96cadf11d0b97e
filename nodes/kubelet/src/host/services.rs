//! What pods learn about Services from their node: the cluster DNS address for resolv.conf and
//! the Docker-link style environment variables (enableServiceLinks).

use k8s_openapi::api::core::v1::{Pod, Service};
use kubus_apimachinery::{pod, ObjectExt};
use kubus_controller_runtime::Informer;
use std::net::IpAddr;
use std::sync::Arc;

/// The Services informer of the agent (None: pods get no Service variables and the cluster DNS
/// only from `--cluster-dns`).
#[derive(Clone, Default)]
pub struct ServiceLookup {
    pub services: Option<Informer<Service>>,
    /// kubelet's `--cluster-dns`.
    pub cluster_dns: Option<IpAddr>,
}

impl ServiceLookup {
    /// The cluster DNS for pods' resolv.conf: `--cluster-dns`, else the ClusterIP of
    /// kube-system/kube-dns (so an agent joining with only a NATS URL finds it).
    pub fn cluster_dns(&self) -> Option<IpAddr> {
        self.cluster_dns.or_else(|| {
            let svc = self.services.as_ref()?.get("kube-system", "kube-dns")?;
            svc.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
        })
    }

    /// Docker-link style variables of the namespace's Services (enableServiceLinks) and the
    /// `kubernetes` Service's, as upstream sets them.
    pub fn env(&self, ns: &str, pod: &Pod) -> Vec<(String, String)> {
        let Some(services) = &self.services else { return vec![] };
        let links = pod::spec(pod).enable_service_links.unwrap_or(true);
        // The namespace's Services (from its index) and the master Service.
        let mut candidates: Vec<Arc<Service>> = if links { services.namespace(ns) } else { vec![] };
        if !(links && ns == "default") {
            candidates.extend(services.get("default", "kubernetes"));
        }
        let mut out = vec![];
        for svc in candidates {
            out.extend(link_variables(&svc));
        }
        out
    }
}

/// `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT>]` and the `<NAME>_PORT_*` family.
fn link_variables(svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = &svc.spec else { return vec![] };
    let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| *ip != "None" && !ip.is_empty()) else {
        return vec![];
    };
    let prefix = svc.name().to_uppercase().replace('-', "_");
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let mut out = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string())];
    if let Some(p) = ports.first() {
        out.push((format!("{prefix}_SERVICE_PORT"), p.port.to_string()));
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        out.push((format!("{prefix}_PORT"), format!("{}://{ip}:{}", proto.to_lowercase(), p.port)));
    }
    for p in ports {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{prefix}_SERVICE_PORT_{}", pn.to_uppercase().replace('-', "_")), p.port.to_string()));
        }
        let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((base.clone(), format!("{}://{ip}:{}", proto.to_lowercase(), p.port)));
        out.push((format!("{base}_PROTO"), proto.to_lowercase()));
        out.push((format!("{base}_PORT"), p.port.to_string()));
        out.push((format!("{base}_ADDR"), ip.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_link_variables() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "my-db", "namespace": "team"},
            "spec": {"clusterIP": "10.96.0.7", "ports": [{"name": "sql", "port": 5432}, {"port": 53, "protocol": "UDP"}]}}))
        .unwrap();
        let vars = link_variables(&svc);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MY_DB_SERVICE_HOST"), Some("10.96.0.7"));
        assert_eq!(get("MY_DB_SERVICE_PORT"), Some("5432"));
        assert_eq!(get("MY_DB_PORT"), Some("tcp://10.96.0.7:5432"));
        assert_eq!(get("MY_DB_SERVICE_PORT_SQL"), Some("5432"));
        assert_eq!(get("MY_DB_PORT_53_UDP"), Some("udp://10.96.0.7:53"));
        assert_eq!(get("MY_DB_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("MY_DB_PORT_5432_TCP_ADDR"), Some("10.96.0.7"));
        let headless: Service =
            serde_json::from_value(json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}})).unwrap();
        assert!(link_variables(&headless).is_empty());
    }
}
