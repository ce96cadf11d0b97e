//! What a pod's sandbox is made from (upstream's `generatePodSandboxConfig`): its hostname,
//! host aliases, hostPorts and resolv.conf by dnsPolicy, from the pod's spec alone.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kubus_apimachinery::{pod, ObjectExt};
use kubus_network::{DnsConfig, HostAlias, PortMapping, Protocol, SandboxRequest};
use std::net::IpAddr;

/// `spec.hostname`, or the pod's name, cut to 63 characters as upstream does.
pub fn hostname(pod: &Pod) -> String {
    pod::spec(pod).hostname.as_deref().unwrap_or(pod.name()).chars().take(63).collect()
}

pub fn host_network(pod: &Pod) -> bool {
    pod::spec(pod).host_network.unwrap_or(false)
}

/// The request for the pod's sandbox; `cluster_dns` and `domain` are the node's
/// `--cluster-dns` and `--cluster-domain`.
pub fn request(pod: &Pod, cluster_dns: Option<IpAddr>, domain: &str) -> SandboxRequest {
    let spec = pod::spec(pod);
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|h| *h > 0)? as u16;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).unwrap_or(0),
                protocol: p.protocol.as_deref().unwrap_or("TCP").parse().unwrap_or(Protocol::Tcp),
                host_ip: p.host_ip.clone().filter(|s| !s.is_empty()),
            })
        })
        .collect();
    SandboxRequest {
        uid: pod.uid().to_string(),
        namespace: pod.namespace_or_default().to_string(),
        name: pod.name().to_string(),
        hostname: hostname(pod),
        subdomain: spec.subdomain.clone(),
        host_aliases: spec
            .host_aliases
            .iter()
            .flatten()
            .map(|a| HostAlias { ip: a.ip.clone(), hostnames: a.hostnames.clone().unwrap_or_default() })
            .collect(),
        host_network: host_network(pod),
        port_mappings,
        dns: dns_for(spec, pod.namespace_or_default(), cluster_dns, domain),
    }
}

/// The pod's resolv.conf by dnsPolicy, as the kubelet writes it: ClusterFirst (the default)
/// points at the cluster DNS with the `<ns>.svc.<domain> svc.<domain> <domain>` search path and
/// ndots:5 (hostNetwork pods fall back to the node's, unless ClusterFirstWithHostNet); Default
/// is the node's; None is `dnsConfig` alone. `dnsConfig` adds to the others. `None` here: the
/// node's resolv.conf as it is.
pub fn dns_for(spec: &PodSpec, ns: &str, cluster_dns: Option<IpAddr>, domain: &str) -> Option<DnsConfig> {
    let cfg = spec.dns_config.as_ref();
    let nameservers = || cfg.and_then(|c| c.nameservers.clone()).unwrap_or_default();
    let searches = || cfg.and_then(|c| c.searches.clone()).unwrap_or_default();
    let options: Vec<String> = cfg
        .and_then(|c| c.options.as_ref())
        .into_iter()
        .flatten()
        .map(|o| {
            let name = o.name.as_deref().unwrap_or("");
            match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            }
        })
        .collect();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let mut base = match (policy, cluster_dns) {
        ("None", _) => return Some(DnsConfig { nameservers: nameservers(), searches: searches(), options }),
        ("ClusterFirstWithHostNet", Some(ip)) | ("ClusterFirst", Some(ip))
            if policy != "ClusterFirst" || !host_network =>
        {
            let node = DnsConfig::from_node().unwrap_or_default();
            let mut searches = vec![format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
            searches.extend(node.searches);
            DnsConfig { nameservers: vec![ip.to_string()], searches, options: vec!["ndots:5".into()] }
        }
        _ if cfg.is_some() => DnsConfig::from_node().unwrap_or_default(),
        _ => return None,
    };
    base.nameservers.extend(nameservers());
    base.searches.extend(searches());
    for o in options {
        let name = o.split(':').next().unwrap_or("").to_string();
        base.options.retain(|x| x.split(':').next() != Some(name.as_str()));
        base.options.push(o);
    }
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn dns_policies() {
        let ip: IpAddr = "10.96.0.10".parse().unwrap();
        let d = dns_for(&spec(json!({})), "team", Some(ip), "cluster.local").unwrap();
        assert_eq!(d.nameservers, vec!["10.96.0.10"]);
        assert_eq!(&d.searches[..3], ["team.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(d.options, vec!["ndots:5"]);
        // hostNetwork pods keep the node's unless ClusterFirstWithHostNet.
        assert!(dns_for(&spec(json!({"hostNetwork": true})), "team", Some(ip), "cluster.local").is_none());
        let d =
            dns_for(&spec(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})), "t", Some(ip), "c.l")
                .unwrap();
        assert_eq!(d.nameservers, vec!["10.96.0.10"]);
        assert!(dns_for(&spec(json!({"dnsPolicy": "Default"})), "t", Some(ip), "c.l").is_none());
        assert!(dns_for(&spec(json!({})), "t", None, "c.l").is_none(), "no cluster DNS: the node's");
        let none = spec(
            json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}}),
        );
        let d = dns_for(&none, "t", Some(ip), "c.l").unwrap();
        assert_eq!(
            (d.nameservers, d.searches, d.options),
            (vec!["1.1.1.1".to_string()], vec![], vec!["ndots:2".to_string()])
        );
        let extra =
            spec(json!({"dnsConfig": {"searches": ["corp.example"], "options": [{"name": "ndots", "value": "1"}]}}));
        let d = dns_for(&extra, "t", Some(ip), "c.l").unwrap();
        assert!(d.searches.contains(&"corp.example".to_string()));
        assert_eq!(d.options, vec!["ndots:1"], "dnsConfig options override");
    }

    #[test]
    fn host_ports_aliases_and_hostname() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "team", "uid": "u1"},
            "spec": {"subdomain": "s", "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a", "b"]}],
                "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"},
                    {"containerPort": 81}]}]}}))
        .unwrap();
        let r = request(&pod, None, "cluster.local");
        assert_eq!((r.uid.as_str(), r.namespace.as_str(), r.hostname.as_str()), ("u1", "team", "web"));
        assert_eq!(r.subdomain.as_deref(), Some("s"));
        assert_eq!(r.host_aliases, vec![HostAlias { ip: "1.2.3.4".into(), hostnames: vec!["a".into(), "b".into()] }]);
        assert_eq!(
            r.port_mappings,
            vec![PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Udp, host_ip: None }]
        );
        assert!(!r.host_network && r.dns.is_none());
    }
}
