//! Rows for the core-group kinds other than pods and events, plus leases.

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::selector::format_labels;
use super::{age, count_keys, int, list, name, text};

/// Label prefix whose suffix names a node role.
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
/// Older label whose value names a node role.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";
/// How many addresses the ENDPOINTS column lists before summarising.
const MAX_ENDPOINTS: usize = 3;

pub(super) fn service(svc: &Value, now: SystemTime) -> Vec<Value> {
    let spec = &svc["spec"];
    // An unset type is defaulted to ClusterIP when the service is stored.
    let kind = match text(spec, &["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = match list(spec, &["clusterIPs"]).first() {
        Some(ip) => ip.as_str().unwrap_or(""),
        // clusterIPs is defaulted from clusterIP, so fall back to it.
        None => match text(spec, &["clusterIP"]) {
            "" => "<none>",
            ip => ip,
        },
    };
    let ports = list(spec, &["ports"])
        .iter()
        .map(|p| {
            let protocol = match text(p, &["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            let port = int(p, &["port"]);
            match int(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    vec![
        name(svc),
        json!(kind),
        json!(cluster_ip),
        json!(external_ip(svc, kind)),
        json!(if ports.is_empty() { "<none>" } else { &ports }),
        age(svc, now),
        json!(format_labels(&spec["selector"])),
    ]
}

fn external_ip(svc: &Value, kind: &str) -> String {
    let spec = &svc["spec"];
    let external: Vec<&str> = list(spec, &["externalIPs"]).iter().filter_map(Value::as_str).collect();
    match kind {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            // Sorted and de-duplicated; the server prints the unclipped form.
            let ingress: BTreeSet<&str> = list(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|i| match (text(i, &["ip"]), text(i, &["hostname"])) {
                    ("", "") => None,
                    ("", host) => Some(host),
                    (ip, _) => Some(ip),
                })
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(spec, &["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub(super) fn endpoints(ep: &Value, now: SystemTime) -> Vec<Value> {
    vec![name(ep), json!(format_endpoints(ep)), age(ep, now)]
}

/// The first few `ip:port` pairs (or bare IPs for port-less subsets) and a
/// count of the rest.
fn format_endpoints(ep: &Value) -> String {
    let subsets = list(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = list(subset, &["addresses"]);
        let ports = list(subset, &["ports"]);
        // Headless services may have no ports at all.
        let port_numbers: Vec<Option<i64>> =
            if ports.is_empty() { vec![None] } else { ports.iter().map(|p| Some(int(p, &["port"]))).collect() };
        for port in port_numbers {
            for address in addresses {
                if shown.len() < MAX_ENDPOINTS {
                    let ip = text(address, &["ip"]);
                    shown.push(match port {
                        None => ip.to_string(),
                        Some(port) if ip.contains(':') => format!("[{ip}]:{port}"),
                        Some(port) => format!("{ip}:{port}"),
                    });
                }
                count += 1;
            }
        }
    }
    let joined = shown.join(",");
    if count > MAX_ENDPOINTS {
        format!("{joined} + {} more...", count - MAX_ENDPOINTS)
    } else {
        joined
    }
}

pub(super) fn namespace(ns: &Value, now: SystemTime) -> Vec<Value> {
    // The phase is defaulted to Active when the namespace is stored.
    let phase = match text(ns, &["status", "phase"]) {
        "" => "Active",
        p => p,
    };
    vec![name(ns), json!(phase), age(ns, now)]
}

pub(super) fn node(node: &Value, now: SystemTime) -> Vec<Value> {
    let status = &node["status"];
    // Only the Ready condition is summarised; the last one listed wins.
    let mut summary: Vec<&str> =
        match list(status, &["conditions"]).iter().rev().find(|c| text(c, &["type"]) == "Ready") {
            Some(c) if text(c, &["status"]) == "True" => vec!["Ready"],
            Some(_) => vec!["NotReady"],
            None => vec!["Unknown"],
        };
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        summary.push("SchedulingDisabled");
    }

    let roles = node_roles(node);
    let info = &status["nodeInfo"];
    let or_unknown = |key: &str| match text(info, &[key]) {
        "" => "<unknown>",
        v => v,
    };
    vec![
        name(node),
        json!(summary.join(",")),
        json!(if roles.is_empty() { "<none>" } else { &roles }),
        age(node, now),
        json!(text(info, &["kubeletVersion"])),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(or_unknown("osImage")),
        json!(or_unknown("kernelVersion")),
        json!(or_unknown("containerRuntimeVersion")),
    ]
}

/// Sorted, de-duplicated roles from both role label conventions.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    if let Some(labels) = node["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix(NODE_ROLE_PREFIX) {
                if !role.is_empty() {
                    roles.insert(role);
                }
            } else if key == NODE_ROLE_LABEL {
                match value.as_str() {
                    Some(role) if !role.is_empty() => {
                        roles.insert(role);
                    }
                    _ => {}
                }
            }
        }
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

fn node_address<'a>(node: &'a Value, kind: &str) -> &'a str {
    list(node, &["status", "addresses"])
        .iter()
        .find(|a| text(a, &["type"]) == kind)
        .map_or("<none>", |a| text(a, &["address"]))
}

pub(super) fn config_map(cm: &Value, now: SystemTime) -> Vec<Value> {
    let keys = count_keys(cm, &["data"]) + count_keys(cm, &["binaryData"]);
    vec![name(cm), json!(keys), age(cm, now)]
}

pub(super) fn secret(secret: &Value, now: SystemTime) -> Vec<Value> {
    // The type is defaulted to Opaque when the secret is stored.
    let kind = match text(secret, &["type"]) {
        "" => "Opaque",
        t => t,
    };
    vec![name(secret), json!(kind), json!(count_keys(secret, &["data"])), age(secret, now)]
}

pub(super) fn service_account(sa: &Value, now: SystemTime) -> Vec<Value> {
    let secrets = i64::try_from(list(sa, &["secrets"]).len()).unwrap_or(i64::MAX);
    vec![name(sa), json!(secrets), age(sa, now)]
}

pub(super) fn lease(lease: &Value, now: SystemTime) -> Vec<Value> {
    vec![name(lease), json!(text(lease, &["spec", "holderIdentity"])), age(lease, now)]
}

/// `used/hard` of every resource the quota names, limits.* in the LIMIT column and the rest
/// in REQUEST (upstream's printResourceQuota).
pub(super) fn resource_quota(q: &Value, now: SystemTime) -> Vec<Value> {
    let quantity = |section: &str, name: &str| match &q["status"][section][name] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    };
    let (mut request, mut limit) = (Vec::new(), Vec::new());
    let mut names: Vec<&String> = q["spec"]["hard"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    names.sort();
    for n in names {
        let cell = format!("{n}: {}/{}", quantity("used", n), quantity("hard", n));
        match n.split_once('.') {
            Some(("limits", _)) => limit.push(cell),
            _ => request.push(cell),
        }
    }
    vec![name(q), age(q, now), json!(request.join(", ")), json!(limit.join(", "))]
}
