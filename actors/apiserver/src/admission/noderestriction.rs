//! NodeRestriction, as upstream's admission plugin: what a node's agent writes is checked
//! against its own name where the authorizer cannot see it (the body of a create or update).
//! A node creates only its own Node and Lease, sets no `node-restriction.kubernetes.io/`
//! label, asks tokens only bound to a pod scheduled on it, and (Kubus's local-path
//! provisioner runs in every node agent) creates only PersistentVolumes pinned to itself for a
//! claim that selected it.

use crate::authn::UserInfo;
use crate::authorization::node::node_of;
use crate::cache::WatchCache;
use kubus_apimachinery::volume::SELECTED_NODE;
use kubus_apimachinery::StatusError;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Labels only the cluster's administrators set on nodes (upstream's restricted prefix).
const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.kubernetes.io/";

/// Checks a create (`old` None) or update of `obj` (resource `group`/`resource`) by `user`.
pub fn validate(
    cache: &WatchCache,
    group: &str,
    resource: &str,
    obj: &Value,
    old: Option<&Value>,
    user: &UserInfo,
) -> Result<(), StatusError> {
    let Some(node) = node_of(user) else { return Ok(()) };
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let forbidden = |why: String| StatusError::forbidden(group, resource, name, why);
    match (group, resource) {
        ("", "nodes") => {
            if name != node {
                return Err(forbidden(format!("node {node:?} is not allowed to modify node {name:?}")));
            }
            let restricted = |o: Option<&'_ Value>| -> BTreeMap<String, Value> {
                o.and_then(|o| o["metadata"]["labels"].as_object())
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.starts_with(RESTRICTED_LABEL_PREFIX))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let (new, before) = (restricted(Some(obj)), restricted(old));
            if new != before {
                let keys: BTreeSet<&str> = new.keys().chain(before.keys()).map(String::as_str).collect();
                let keys: Vec<&str> = keys.into_iter().collect();
                return Err(forbidden(format!("is not allowed to modify labels: {}", keys.join(", "))));
            }
        }
        ("coordination.k8s.io", "leases") if old.is_none() => {
            let namespace = obj["metadata"]["namespace"].as_str().unwrap_or_default();
            if namespace != "kube-node-lease" {
                return Err(forbidden("can only access leases in the \"kube-node-lease\" system namespace".into()));
            }
            if name != node {
                return Err(forbidden(format!("can only access node lease with the same name as {node:?}")));
            }
        }
        ("", "persistentvolumes") => {
            let pinned = crate::authorization::node::pinned_to(obj, node);
            let claim = &obj["spec"]["claimRef"];
            let selected = match (claim["namespace"].as_str(), claim["name"].as_str()) {
                (Some(ns), Some(claim)) => cache
                    .get(&(String::new(), "persistentvolumeclaims".into()), &(ns.to_string(), claim.to_string()))
                    .and_then(|c| c.decode::<Value>().ok())
                    .is_some_and(|c| c["metadata"]["annotations"][SELECTED_NODE] == node),
                _ => false,
            };
            if !(pinned && selected) {
                return Err(forbidden(format!(
                    "node {node:?} can only create persistent volumes pinned to itself for claims that selected it"
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Upstream's check of a node's TokenRequest: bound to a pod scheduled on the node.
pub fn validate_token_request(
    cache: &WatchCache,
    namespace: &str,
    service_account: &str,
    request: &Value,
    user: &UserInfo,
) -> Result<(), StatusError> {
    let Some(node) = node_of(user) else { return Ok(()) };
    let forbidden = |why: &str| StatusError::forbidden("", "serviceaccounts", service_account, why);
    let bound = &request["spec"]["boundObjectRef"];
    if bound["kind"] != "Pod" {
        return Err(forbidden("node requested token not bound to a pod"));
    }
    let name = bound["name"].as_str().unwrap_or_default();
    let pods = (String::new(), "pods".to_string());
    if cache.get(&pods, &(namespace.to_string(), name.to_string())).is_none() {
        return Err(forbidden("node requested token bound to a pod that does not exist"));
    }
    match crate::authorization::node::pod_is_on(cache, node, namespace, name) {
        true => Ok(()),
        false => Err(forbidden("node requested token bound to a pod scheduled on a different node")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_bus::{EventType, Key};
    use serde_json::json;

    fn node(name: &str) -> UserInfo {
        UserInfo::new(&format!("system:node:{name}"), &["system:nodes", "system:authenticated"])
    }

    fn cache() -> WatchCache {
        let cache = WatchCache::new(100);
        cache.replace(Vec::new(), Vec::new(), 1);
        let put = |resource: &str, value: Value, revision: u64| {
            let (ns, name) =
                (value["metadata"]["namespace"].as_str().unwrap(), value["metadata"]["name"].as_str().unwrap());
            cache.apply(kubus_bus::Event {
                kind: EventType::Added,
                key: Key::new("", resource, Some(ns), name),
                revision,
                value: bytes::Bytes::from(value.to_string()),
            });
        };
        put(
            "persistentvolumeclaims",
            json!({"metadata": {"name": "data", "namespace": "t", "annotations": {SELECTED_NODE: "a"}}}),
            2,
        );
        put("pods", json!({"metadata": {"name": "p", "namespace": "t"}, "spec": {"nodeName": "a"}}), 3);
        cache
    }

    #[test]
    fn a_node_writes_only_what_is_its_own() {
        let c = cache();
        let (a, admin) = (node("a"), UserInfo::new("admin", &["system:masters"]));
        let check = |res: &str, obj: Value, old: Option<Value>, u: &UserInfo| {
            let group = if res == "leases" { "coordination.k8s.io" } else { "" };
            validate(&c, group, res, &obj, old.as_ref(), u)
        };
        assert!(check("nodes", json!({"metadata": {"name": "a"}}), None, &a).is_ok());
        let e = check("nodes", json!({"metadata": {"name": "b"}}), None, &a).unwrap_err();
        assert_eq!(e.message, r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#);
        let labelled = json!({"metadata": {"name": "a", "labels": {"node-restriction.kubernetes.io/x": "y"}}});
        assert!(check("nodes", labelled.clone(), None, &a)
            .unwrap_err()
            .message
            .contains("is not allowed to modify labels"));
        assert!(check("nodes", labelled, None, &admin).is_ok());
        assert!(check("leases", json!({"metadata": {"name": "a", "namespace": "kube-node-lease"}}), None, &a).is_ok());
        assert!(check("leases", json!({"metadata": {"name": "b", "namespace": "kube-node-lease"}}), None, &a).is_err());
        assert!(check("leases", json!({"metadata": {"name": "a", "namespace": "kube-system"}}), None, &a).is_err());
        let pv = |host: &str, claim: &str| {
            json!({"metadata": {"name": "pv"}, "spec": {"claimRef": {"namespace": "t", "name": claim},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}}})
        };
        assert!(check("persistentvolumes", pv("a", "data"), None, &a).is_ok());
        assert!(check("persistentvolumes", pv("b", "data"), None, &a).is_err());
        assert!(check("persistentvolumes", pv("a", "other"), None, &a).is_err());
        assert!(check("persistentvolumes", pv("a", "data"), None, &node("b")).is_err());

        let token = |bound: Value| json!({"spec": {"boundObjectRef": bound}});
        assert!(validate_token_request(&c, "t", "default", &token(json!({"kind": "Pod", "name": "p"})), &a).is_ok());
        let e = validate_token_request(&c, "t", "default", &token(json!({"kind": "Pod", "name": "p"})), &node("b"));
        assert!(e.unwrap_err().message.contains("bound to a pod scheduled on a different node"));
        let e = validate_token_request(&c, "t", "default", &token(Value::Null), &a).unwrap_err();
        assert_eq!(e.message, r#"serviceaccounts "default" is forbidden: node requested token not bound to a pod"#);
    }
}
