//! Host networking and DNS: host ports under hostNetwork, dnsPolicy and dnsConfig.

use serde_json::Value;

use super::{dns_subdomain, Opts};
use crate::status::Cause;
use crate::validation::names;
use crate::validation::util::*;

pub(super) fn validate_host_network_ports(spec: &Value, p: &str, opts: Opts, errs: &mut Vec<Cause>) {
    if !get_bool(spec, "hostNetwork") {
        return;
    }
    for (i, c) in get_arr(spec, "containers").iter().enumerate() {
        for (j, port) in get_arr(c, "ports").iter().enumerate() {
            let hp = get_int(port, "hostPort").unwrap_or(0);
            let cp = get_int(port, "containerPort").unwrap_or(0);
            // Templates may leave hostPort for the pod defaulting to fill in.
            if (opts.is_pod || hp != 0) && hp != cp {
                errs.push(Cause::invalid(
                    format!("{p}.containers[{i}].ports[{j}].hostPort"),
                    &Value::from(hp),
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

pub(super) fn validate_dns_config(spec: &Value, dns_policy: &str, p: &str, errs: &mut Vec<Cause>) {
    let dp = child(p, "dnsConfig");
    let config = get(spec, "dnsConfig");
    if dns_policy == "None" {
        match config {
            None => {
                errs.push(required_detail(&dp, "must provide `dnsConfig` when `dnsPolicy` is None"));
                return;
            }
            Some(c) if get_arr(c, "nameservers").is_empty() => {
                errs.push(required_detail(
                    &child(&dp, "nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            Some(_) => {}
        }
    }
    let Some(c) = config else {
        return;
    };
    let nameservers = get_arr(c, "nameservers");
    if nameservers.len() > 3 {
        errs.push(Cause::invalid(
            child(&dp, "nameservers"),
            sub(c, "nameservers"),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if ns.as_str().and_then(names::parse_ip).is_none() {
            errs.push(Cause::invalid(index(&child(&dp, "nameservers"), i), ns, names::INVALID_IP));
        }
    }
    let searches: Vec<&str> = get_arr(c, "searches").iter().filter_map(Value::as_str).collect();
    if searches.len() > 32 {
        errs.push(Cause::invalid(
            child(&dp, "searches"),
            sub(c, "searches"),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(Cause::invalid(
            child(&dp, "searches"),
            sub(c, "searches"),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        dns_subdomain(errs, trimmed, &index(&child(&dp, "searches"), i));
    }
    for (i, o) in get_arr(c, "options").iter().enumerate() {
        if get_str(o, "name").is_empty() {
            errs.push(required_detail(&index(&child(&dp, "options"), i), "must not be empty"));
        }
    }
}
