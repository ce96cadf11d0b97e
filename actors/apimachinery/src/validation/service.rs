//! Services and Endpoints (upstream `ValidateService`, `ValidateServiceUpdate`,
//! `ValidateEndpoints`). Node port ranges and allocation are left to the allocator.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::meta::{self, NameRule, Scope};
use super::names;
use super::pod::validate_port_num_or_name;
use super::util::*;
use crate::status::Cause;

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

fn string_list<'a>(v: &'a Value, k: &str) -> Vec<&'a str> {
    get_arr(v, k).iter().filter_map(Value::as_str).collect()
}

fn cluster_ips(spec: &Value) -> Vec<&str> {
    string_list(spec, "clusterIPs")
}

/// Headless per upstream: clusterIPs is exactly ["None"]. Objects that skipped defaulting may
/// only carry clusterIP, so that counts too.
fn is_headless(spec: &Value) -> bool {
    let ips = cluster_ips(spec);
    ips == ["None"] || (ips.is_empty() && get_str(spec, "clusterIP") == "None")
}

fn externally_accessible(spec: &Value) -> bool {
    match get_str(spec, "type") {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !get_arr(spec, "externalIPs").is_empty(),
        _ => false,
    }
}

fn needs_health_check(spec: &Value) -> bool {
    get_str(spec, "type") == "LoadBalancer" && get_str(spec, "externalTrafficPolicy") == "Local"
}

pub(crate) fn validate_service(svc: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(svc, Scope::Namespaced, NameRule::Dns1035Label);
    let spec = sub(svc, "spec");
    let svc_type = get_str(spec, "type");
    let headless = is_headless(spec);
    let ports = get_arr(spec, "ports");

    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(Cause::required("spec.ports"));
    }
    match svc_type {
        "LoadBalancer" | "NodePort" if headless => errs.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &str_value("None"),
            format!("may not be set to 'None' for {svc_type} services"),
        )),
        "ExternalName" => {
            for field in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if get(spec, field).and_then(normalized).is_some() {
                    errs.push(Cause::forbidden(format!("spec.{field}"), "may not be set for ExternalName services"));
                }
            }
            // A trailing dot marks the CNAME fully qualified.
            let cname = get_str(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(Cause::required("spec.externalName"));
            } else {
                invalid_each(&mut errs, "spec.externalName", cname, names::dns1123_subdomain_errors(cname));
            }
        }
        _ => {}
    }

    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        service_port(&mut errs, port, ports.len() > 1, &mut port_names, &index("spec.ports", i));
    }
    if let Some(sel) = get(spec, "selector") {
        errs.extend(meta::validate_labels(Some(sel), "spec.selector"));
    }

    let affinity = get_str(spec, "sessionAffinity");
    match affinity {
        "" => errs.push(Cause::required("spec.sessionAffinity")),
        "ClientIP" => client_ip_affinity(&mut errs, spec),
        "None" => {
            if get(spec, "sessionAffinityConfig").is_some() {
                errs.push(Cause::forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(Cause::not_supported("spec.sessionAffinity", &str_value(other), &["ClientIP", "None"])),
    }

    errs.extend(cluster_ip_fields(spec));

    for (i, ip) in string_list(spec, "externalIPs").into_iter().enumerate() {
        let p = index("spec.externalIPs", i);
        if names::parse_ip(ip).is_none() {
            errs.push(Cause::invalid(&p, &str_value(ip), names::INVALID_IP));
        } else {
            invalid_each(&mut errs, &p, ip, names::special_ip_errors(ip));
        }
    }

    let types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if svc_type.is_empty() {
        errs.push(Cause::required("spec.type"));
    } else if !types.contains(&svc_type) {
        errs.push(Cause::not_supported("spec.type", &str_value(svc_type), &types));
    }

    if svc_type == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if get_int(port, "nodePort").unwrap_or(0) != 0 {
                errs.push(Cause::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    // The same node port or service port twice for one protocol cannot be routed.
    let mut node_ports = HashSet::new();
    let mut service_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = get_str(port, "protocol");
        let node_port = get_int(port, "nodePort").unwrap_or(0);
        if node_port != 0 && !node_ports.insert((protocol, node_port)) {
            errs.push(Cause::duplicate(format!("spec.ports[{i}].nodePort"), &Value::from(node_port)));
        }
        let number = get_int(port, "port").unwrap_or(0);
        if !service_ports.insert((protocol, number)) {
            errs.push(Cause::duplicate(index("spec.ports", i), &json!({"port": number, "protocol": protocol})));
        }
    }

    source_ranges(&mut errs, svc, spec, svc_type);

    if svc_type == "LoadBalancer" {
        if get(spec, "allocateLoadBalancerNodePorts").is_none() {
            errs.push(Cause::required("spec.allocateLoadBalancerNodePorts"));
        }
        if let Some(class) = get(spec, "loadBalancerClass") {
            let c = class.as_str().unwrap_or("");
            invalid_each(&mut errs, "spec.loadBalancerClass", c, names::qualified_name_errors(c));
        }
    } else {
        for field in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if get(spec, field).is_some() {
                errs.push(Cause::forbidden(format!("spec.{field}"), "may only be used when `type` is 'LoadBalancer'"));
            }
        }
    }

    let etp = get_str(spec, "externalTrafficPolicy");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(Cause::invalid(
                "spec.externalTrafficPolicy",
                &str_value(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(Cause::required("spec.externalTrafficPolicy"));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(Cause::not_supported("spec.externalTrafficPolicy", &str_value(etp), &["Cluster", "Local"]));
    }
    // Allocation of the health check port is the allocator's; only its shape is checked.
    let hc = get_int(spec, "healthCheckNodePort").unwrap_or(0);
    if hc != 0 {
        let p = "spec.healthCheckNodePort";
        if !needs_health_check(spec) {
            errs.push(Cause::invalid(
                p,
                &Value::from(hc),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        } else if !(1..=65535).contains(&hc) {
            errs.push(Cause::invalid(p, &Value::from(hc), names::inclusive_range_error(1, 65535)));
        }
    }

    match get(spec, "internalTrafficPolicy").and_then(Value::as_str) {
        None if matches!(svc_type, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(Cause::required("spec.internalTrafficPolicy"))
        }
        Some(itp) if !matches!(itp, "Cluster" | "Local") => {
            errs.push(Cause::not_supported("spec.internalTrafficPolicy", &str_value(itp), &["Cluster", "Local"]))
        }
        _ => {}
    }
    if let Some(td) = get(spec, "trafficDistribution") {
        if td.as_str() != Some("PreferClose") {
            errs.push(Cause::not_supported("spec.trafficDistribution", td, &["PreferClose"]));
        }
    }
    errs
}

/// Load balancer source ranges, from the field or else the legacy annotation: only for
/// LoadBalancer services, and each a CIDR.
fn source_ranges(errs: &mut Vec<Cause>, svc: &Value, spec: &Value, svc_type: &str) {
    let annotations = sub(sub(svc, "metadata"), "annotations");
    let field = string_list(spec, "loadBalancerSourceRanges");
    let (path, values, indexed) = if !field.is_empty() {
        ("spec.LoadBalancerSourceRanges".to_string(), field, true)
    } else if let Some(ann) = get(annotations, SOURCE_RANGES_ANNOTATION) {
        let list = ann.as_str().unwrap_or("").split(',');
        let values = list.filter(|s| !s.trim().is_empty()).collect();
        (key("metadata.annotations", SOURCE_RANGES_ANNOTATION), values, false)
    } else {
        return;
    };
    if svc_type != "LoadBalancer" {
        errs.push(Cause::forbidden(&path, "may only be used when `type` is 'LoadBalancer'"));
    }
    for (i, r) in values.iter().enumerate() {
        // Historical values may be space padded.
        let r = r.trim();
        if names::parse_cidr(r).is_none() {
            let p = if indexed { index(&path, i) } else { path.clone() };
            errs.push(Cause::invalid(p, &str_value(r), names::INVALID_CIDR));
        }
    }
}

fn service_port(errs: &mut Vec<Cause>, port: &Value, require_name: bool, seen: &mut HashSet<String>, p: &str) {
    let name = get_str(port, "name");
    let np = child(p, "name");
    if require_name && name.is_empty() {
        errs.push(Cause::required(&np));
    } else if !name.is_empty() {
        invalid_each(errs, &np, name, names::dns1123_label_errors(name));
        if !seen.insert(name.to_string()) {
            errs.push(Cause::duplicate(&np, &str_value(name)));
        }
    }
    let number = get_int(port, "port").unwrap_or(0);
    if !(1..=65535).contains(&number) {
        errs.push(Cause::invalid(child(p, "port"), &Value::from(number), names::inclusive_range_error(1, 65535)));
    }
    protocol(errs, port, p);
    validate_port_num_or_name(errs, get(port, "targetPort"), &child(p, "targetPort"));
    if let Some(app) = get(port, "appProtocol") {
        let a = app.as_str().unwrap_or("");
        invalid_each(errs, &child(p, "appProtocol"), a, names::qualified_name_errors(a));
    }
}

fn protocol(errs: &mut Vec<Cause>, port: &Value, p: &str) {
    let proto = get_str(port, "protocol");
    let pp = child(p, "protocol");
    if proto.is_empty() {
        errs.push(Cause::required(&pp));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(Cause::not_supported(&pp, &str_value(proto), &PROTOCOLS));
    }
}

fn client_ip_affinity(errs: &mut Vec<Cause>, spec: &Value) {
    let p = "spec.sessionAffinityConfig";
    let detail = "when session affinity type is ClientIP";
    let Some(config) = get(spec, "sessionAffinityConfig") else {
        errs.push(required_detail(p, detail));
        return;
    };
    let Some(client) = get(config, "clientIP") else {
        errs.push(required_detail(&child(p, "clientIP"), detail));
        return;
    };
    let tp = format!("{p}.clientIP.timeoutSeconds");
    match get(client, "timeoutSeconds") {
        None => errs.push(required_detail(&tp, detail)),
        Some(t) => {
            if as_int(t).is_none_or(|n| n <= 0 || n > MAX_CLIENT_IP_AFFINITY_SECONDS) {
                errs.push(Cause::invalid(
                    &tp,
                    t,
                    format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
                ));
            }
        }
    }
}

/// clusterIP, clusterIPs, ipFamilies and ipFamilyPolicy must agree with each other.
fn cluster_ip_fields(spec: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    if get_str(spec, "type") == "ExternalName" {
        return errs;
    }
    let cluster_ip = get_str(spec, "clusterIP");
    let ips = cluster_ips(spec);
    let ips_value = sub(spec, "clusterIPs");
    if !cluster_ip.is_empty() {
        if cluster_ip != "None" && names::parse_ip(cluster_ip).is_none() {
            errs.push(Cause::invalid(
                "spec.clusterIP",
                &str_value(cluster_ip),
                "must be empty, 'None', or a valid IP address",
            ));
        }
        match ips.first() {
            None => errs.push(Cause::required("spec.clusterIPs")),
            Some(first) if *first != cluster_ip => {
                errs.push(Cause::invalid("spec.clusterIPs", ips_value, "first value must match `clusterIP`"))
            }
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errs.push(Cause::invalid("spec.clusterIPs", ips_value, "must be empty when `clusterIP` is not specified"));
    }

    let families = string_list(spec, "ipFamilies");
    let mut seen = HashSet::new();
    for (i, f) in families.iter().enumerate() {
        let p = index("spec.ipFamilies", i);
        if !matches!(*f, "IPv4" | "IPv6") {
            errs.push(Cause::not_supported(&p, &str_value(f), &["IPv4", "IPv6"]));
        }
        if !seen.insert(*f) {
            errs.push(Cause::duplicate(&p, &str_value(f)));
        }
    }
    if let Some(policy) = get(spec, "ipFamilyPolicy") {
        let allowed = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !policy.as_str().is_some_and(|p| allowed.contains(&p)) {
            errs.push(Cause::not_supported("spec.ipFamilyPolicy", policy, &allowed));
        }
    }

    let mut bad_ips = false;
    let mut ip_families = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                bad_ips = true;
                errs.push(Cause::invalid("spec.clusterIPs", ips_value, "'None' must be the first and only value"));
            }
            continue;
        }
        match names::parse_ip(ip) {
            Some(v6) => ip_families.push(v6),
            None => {
                bad_ips = true;
                errs.push(Cause::invalid(index("spec.clusterIPs", i), &str_value(ip), names::INVALID_IP));
            }
        }
    }
    if ips.len() > 2 {
        errs.push(Cause::invalid("spec.clusterIPs", ips_value, "may only hold up to 2 values"));
    }
    if bad_ips {
        return errs;
    }
    if ips.len() == 2 && ip_families.len() == 2 && ip_families[0] == ip_families[1] {
        errs.push(Cause::invalid("spec.clusterIPs", ips_value, "may specify no more than one IP for each IP family"));
    }
    if ips != ["None"] {
        for (i, (v6, family)) in ip_families.iter().zip(&families).enumerate() {
            let expected = match *family {
                "IPv4" if *v6 => Some("IPv4"),
                "IPv6" if !*v6 => Some("IPv6"),
                _ => None,
            };
            if let Some(expected) = expected {
                errs.push(Cause::invalid(
                    index("spec.clusterIPs", i),
                    &str_value(ips[i]),
                    format!("expected an {expected} value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

pub(crate) fn validate_service_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let ns = sub(new, "spec");
    let os = sub(old, "spec");
    let external = get_str(ns, "type") == "ExternalName" || get_str(os, "type") == "ExternalName";
    if !external {
        // The cluster IP is allocated once; only a move to or from ExternalName releases it.
        let old_ip = get_str(os, "clusterIP");
        if !old_ip.is_empty() && get_str(ns, "clusterIP") != old_ip {
            errs.push(Cause::invalid("spec.clusterIP", &str_value(get_str(ns, "clusterIP")), IMMUTABLE));
        }
        errs.extend(upgrade_downgrade_cluster_ips(ns, os));
        errs.extend(upgrade_downgrade_families(ns, os));
    }
    if get_str(ns, "type") == "LoadBalancer"
        && get_str(os, "type") == "LoadBalancer"
        && get(ns, "loadBalancerClass") != get(os, "loadBalancerClass")
    {
        errs.push(Cause::invalid("spec.loadBalancerClass", sub(ns, "loadBalancerClass"), "may not change once set"));
    }
    if needs_health_check(ns)
        && needs_health_check(os)
        && get_int(ns, "healthCheckNodePort") != get_int(os, "healthCheckNodePort")
    {
        errs.push(Cause::forbidden("spec.healthCheckNodePort", IMMUTABLE));
    }
    errs.extend(validate_service(new));
    errs
}

fn upgrade_downgrade_cluster_ips(ns: &Value, os: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    if is_headless(ns) && is_headless(os) {
        return errs;
    }
    let new_ips = cluster_ips(ns);
    let old_ips = cluster_ips(os);
    let shown = sub(ns, "clusterIPs");
    let changed = |i: usize| Cause::invalid(index("spec.clusterIPs", i), shown, "may not change once set");
    if new_ips.len() == old_ips.len() {
        for (i, (n, o)) in new_ips.iter().zip(&old_ips).enumerate() {
            if n != o {
                errs.push(changed(i));
            }
        }
    } else if old_ips.len() > new_ips.len() {
        match new_ips.first() {
            None => errs.push(Cause::invalid("spec.clusterIPs[0]", shown, "primary clusterIP can not be unset")),
            Some(first) if *first != old_ips[0] => errs.push(changed(0)),
            Some(_) => {}
        }
        if new_ips.len() == 1 && get_str(ns, "ipFamilyPolicy") != "SingleStack" {
            errs.push(Cause::invalid(
                "spec.ipFamilyPolicy",
                sub(ns, "ipFamilyPolicy"),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errs.push(changed(0));
    }
    errs
}

fn upgrade_downgrade_families(ns: &Value, os: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    // Headless services may change families, as may a move to or from headless.
    if is_headless(ns) || is_headless(os) {
        return errs;
    }
    let new_f = string_list(ns, "ipFamilies");
    let old_f = string_list(os, "ipFamilies");
    let shown = sub(ns, "ipFamilies");
    let changed = || Cause::invalid("spec.ipFamilies[0]", shown, "may not change once set");
    if new_f.len() == old_f.len() {
        if new_f != old_f {
            errs.push(changed());
        }
    } else if old_f.len() > new_f.len() {
        if new_f.first().is_some_and(|f| *f != old_f[0]) {
            errs.push(changed());
        }
        if new_f.len() == 1 && get_str(ns, "ipFamilyPolicy") != "SingleStack" {
            errs.push(Cause::invalid(
                "spec.ipFamilyPolicy",
                sub(ns, "ipFamilyPolicy"),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !old_f.is_empty() && new_f[0] != old_f[0] {
        errs.push(changed());
    }
    errs
}

pub(crate) fn validate_service_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let p = "status.loadBalancer.ingress";
    let ingress = get_arr(sub(sub(new, "status"), "loadBalancer"), "ingress");
    let lb = get_str(sub(new, "spec"), "type") == "LoadBalancer";
    if !ingress.is_empty() && !lb {
        errs.push(Cause::forbidden(p, "may only be used when `spec.type` is 'LoadBalancer'"));
    }
    for (i, ing) in ingress.iter().enumerate() {
        let ip_path = index(p, i);
        let ip = get_str(ing, "ip");
        if !ip.is_empty() && names::parse_ip(ip).is_none() {
            errs.push(Cause::invalid(child(&ip_path, "ip"), &str_value(ip), names::INVALID_IP));
        }
        match get(ing, "ipMode") {
            Some(_) if ip.is_empty() => {
                errs.push(Cause::forbidden(child(&ip_path, "ipMode"), "may not be specified when `ip` is not set"))
            }
            Some(mode) if !matches!(mode.as_str(), Some("VIP" | "Proxy")) => {
                errs.push(Cause::not_supported(child(&ip_path, "ipMode"), mode, &["Proxy", "VIP"]))
            }
            None if !ip.is_empty() && lb => {
                errs.push(required_detail(&child(&ip_path, "ipMode"), "must be specified when `ip` is set"))
            }
            _ => {}
        }
        let host = get_str(ing, "hostname");
        if !host.is_empty() {
            let hp = child(&ip_path, "hostname");
            invalid_each(&mut errs, &hp, host, names::dns1123_subdomain_errors(host));
            if names::parse_ip(host).is_some() {
                errs.push(Cause::invalid(&hp, &str_value(host), "must be a DNS name, not an IP address"));
            }
        }
    }
    errs
}

pub(crate) fn validate_endpoints(ep: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(ep, Scope::Namespaced, NameRule::Subdomain);
    for (i, ss) in get_arr(ep, "subsets").iter().enumerate() {
        let sp = index("subsets", i);
        let addresses = get_arr(ss, "addresses");
        let not_ready = get_arr(ss, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(required_detail(&sp, "must specify `addresses` or `notReadyAddresses`"));
        }
        for (field, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (j, addr) in list.iter().enumerate() {
                endpoint_address(&mut errs, addr, &format!("{sp}.{field}[{j}]"));
            }
        }
        let ports = get_arr(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = format!("{sp}.ports[{j}]");
            let name = get_str(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(Cause::required(child(&pp, "name")));
            } else if !name.is_empty() {
                invalid_each(&mut errs, &child(&pp, "name"), name, names::dns1123_label_errors(name));
            }
            let number = get_int(port, "port").unwrap_or(0);
            if !(1..=65535).contains(&number) {
                errs.push(Cause::invalid(
                    child(&pp, "port"),
                    &Value::from(number),
                    names::inclusive_range_error(1, 65535),
                ));
            }
            protocol(&mut errs, port, &pp);
            if let Some(app) = get(port, "appProtocol") {
                let a = app.as_str().unwrap_or("");
                invalid_each(&mut errs, &child(&pp, "appProtocol"), a, names::qualified_name_errors(a));
            }
        }
    }
    errs
}

fn endpoint_address(errs: &mut Vec<Cause>, addr: &Value, p: &str) {
    let ip = get_str(addr, "ip");
    let ip_path = child(p, "ip");
    if names::parse_ip(ip).is_none() {
        errs.push(Cause::invalid(&ip_path, &str_value(ip), names::INVALID_IP));
    }
    let host = get_str(addr, "hostname");
    if !host.is_empty() {
        invalid_each(errs, &child(p, "hostname"), host, names::dns1123_label_errors(host));
    }
    if let Some(node) = get(addr, "nodeName") {
        let n = node.as_str().unwrap_or("");
        invalid_each(errs, &child(p, "nodeName"), n, names::dns1123_subdomain_errors(n));
    }
    if names::parse_ip(ip).is_some() {
        invalid_each(errs, &ip_path, ip, names::special_ip_errors(ip));
    }
}
