//! The Node authorizer, as upstream's (with the part of its NodeRestriction admission that the
//! request's attributes decide): a node's agent (user `system:node:<name>` in `system:nodes`)
//! may read the Secrets, ConfigMaps, PersistentVolumeClaims and PersistentVolumes its own pods
//! use, and ask tokens for their ServiceAccounts, nothing else of those kinds; it may change
//! only its own Node and Lease and the pods bound to it; the rest of upstream's node rules
//! (`system:node`) it may do anywhere. Whether an object is a node's is read from the watch
//! cache: its pods, filed by `spec.nodeName` ([`POD_NODE_INDEX`]).
//!
//! Kubus runs kube-proxy inside the node agent, as k3s's agent does, so the node may also list
//! and watch EndpointSlices (upstream gives kube-proxy an identity of its own, system:node-proxier).

use super::rbac::PolicyRule;
use super::{Attributes, Authorizer, Decision};
use crate::authn::NODES_GROUP;
use crate::cache::WatchCache;
use serde_json::Value;
use std::sync::Arc;

/// The watch cache's index of pods by `spec.nodeName`.
pub const POD_NODE_INDEX: &str = "node";
/// Where node Leases live.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

pub fn pod_node_index(pod: &Value) -> Vec<String> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).map(|n| vec![n.to_string()]).unwrap_or_default()
}

/// Whether pod `namespace/name` is bound to `node` (read from the cache's selectable fields,
/// without decoding the pod).
pub fn pod_is_on(cache: &WatchCache, node: &str, namespace: &str, name: &str) -> bool {
    cache
        .get(&(String::new(), "pods".into()), &(namespace.to_string(), name.to_string()))
        .is_some_and(|p| p.field("spec.nodeName") == Some(node))
}

/// The node a user is the agent of: `system:node:<name>` in `system:nodes`.
pub fn node_of(user: &crate::authn::UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    (!name.is_empty() && user.in_group(NODES_GROUP)).then_some(name)
}

pub struct NodeAuthorizer {
    cache: WatchCache,
    /// Upstream's node rules (the `system:node` ClusterRole's).
    rules: Arc<[PolicyRule]>,
}

impl NodeAuthorizer {
    /// Files pods by node in `cache` and authorizes from it.
    pub fn new(cache: WatchCache) -> NodeAuthorizer {
        cache.add_index(&(String::new(), "pods".into()), POD_NODE_INDEX, pod_node_index);
        let rules = super::bootstrap::node_rules().iter().map(PolicyRule::from_json).collect();
        NodeAuthorizer { cache, rules }
    }

    /// The pods bound to `node` in `namespace`, decoded.
    fn pods_of(&self, node: &str, namespace: &str) -> Vec<Value> {
        self.cache
            .by_index(&(String::new(), "pods".into()), POD_NODE_INDEX, &[node.to_string()])
            .into_iter()
            .filter(|p| p.namespace() == namespace)
            .filter_map(|p| p.decode::<Value>().ok())
            .collect()
    }

    /// Whether a pod bound to `node` uses the object `a` names.
    fn related(&self, node: &str, a: &Attributes) -> bool {
        if a.name.is_empty() {
            return false;
        }
        match (a.resource.as_str(), a.subresource.as_str()) {
            ("persistentvolumes", "") => {
                // A volume is the node's when a claim one of its pods uses is bound to it (read
                // from the claim, which the control plane binds, not from the volume).
                self.cache
                    .by_index(&(String::new(), "pods".into()), POD_NODE_INDEX, &[node.to_string()])
                    .into_iter()
                    .filter_map(|p| p.decode::<Value>().ok())
                    .flat_map(|p| claims_of(&p))
                    .any(|(ns, claim)| {
                        self.cache
                            .get(&(String::new(), "persistentvolumeclaims".into()), &(ns, claim))
                            .and_then(|c| c.decode::<Value>().ok())
                            .is_some_and(|c| c["spec"]["volumeName"] == a.name.as_str())
                    })
            }
            (resource, "") | (resource @ "serviceaccounts", "token") => {
                self.pods_of(node, &a.namespace).iter().any(|p| uses(p, resource, &a.name))
            }
            _ => false,
        }
    }

    fn pod_is_on(&self, node: &str, namespace: &str, name: &str) -> bool {
        pod_is_on(&self.cache, node, namespace, name)
    }
}

/// The (namespace, name) of every claim `pod` mounts (generic ephemeral volumes' too).
fn claims_of(pod: &Value) -> Vec<(String, String)> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| match v["persistentVolumeClaim"]["claimName"].as_str() {
            Some(claim) => Some(claim.to_string()),
            None if v["ephemeral"].is_object() => v["name"].as_str().map(|vol| format!("{pod_name}-{vol}")),
            None => None,
        })
        .map(|claim| (ns.to_string(), claim))
        .collect()
}

/// Whether `pod` uses the object `name` of `resource` (volumes, environment, pull secrets, its
/// ServiceAccount).
fn uses(pod: &Value, resource: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    let containers = || {
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .flat_map(move |k| spec[k].as_array().into_iter().flatten())
    };
    let is = |v: &Value| v.as_str() == Some(name);
    let volumes = || spec["volumes"].as_array().into_iter().flatten();
    let projected = || volumes().flat_map(|v| v["projected"]["sources"].as_array().into_iter().flatten());
    let env_ref = |key: &str, from_key: &str| {
        containers().any(|c| {
            c["env"].as_array().into_iter().flatten().any(|e| is(&e["valueFrom"][key]["name"]))
                || c["envFrom"].as_array().into_iter().flatten().any(|e| is(&e[from_key]["name"]))
        })
    };
    match resource {
        "secrets" => {
            volumes().any(|v| is(&v["secret"]["secretName"]))
                || projected().any(|s| is(&s["secret"]["name"]))
                || spec["imagePullSecrets"].as_array().into_iter().flatten().any(|s| is(&s["name"]))
                || env_ref("secretKeyRef", "secretRef")
        }
        "configmaps" => {
            volumes().any(|v| is(&v["configMap"]["name"]))
                || projected().any(|s| is(&s["configMap"]["name"]))
                || env_ref("configMapKeyRef", "configMapRef")
        }
        "persistentvolumeclaims" => claims_of(pod).iter().any(|(_, claim)| claim == name),
        "serviceaccounts" => spec["serviceAccountName"].as_str().filter(|s| !s.is_empty()).unwrap_or("default") == name,
        _ => false,
    }
}

impl Authorizer for NodeAuthorizer {
    fn metric_labels(&self) -> [&'static str; 2] {
        ["Node", "node"]
    }

    fn authorize(&self, a: &Attributes) -> Decision {
        let Some(node) = node_of(&a.user) else { return Decision::NoOpinion(String::new()) };
        if !a.resource_request {
            return Decision::NoOpinion(String::new());
        }
        let allow = || Decision::Allow(String::new());
        let no = |why: &str| Decision::NoOpinion(why.to_string());
        let deny = |why: String| Decision::Deny(why);
        let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
        match (a.api_group.as_str(), a.resource.as_str(), a.subresource.as_str()) {
            ("", "persistentvolumes", "") if a.verb == "delete" => match self.volume_is_on(node, &a.name) {
                true => no(""),
                false => deny(format!("node {node:?} can only delete persistent volumes pinned to itself")),
            },
            // Upstream's graph-checked kinds, read one named object at a time (a list or watch
            // of one, by metadata.name, too; PVs and PVCs by get only).
            ("", resource @ ("secrets" | "configmaps" | "persistentvolumeclaims" | "persistentvolumes"), "") => {
                let by_get_only = matches!(resource, "persistentvolumeclaims" | "persistentvolumes");
                if !read {
                    no("can only read resources of this type")
                } else if a.name.is_empty() {
                    no("No Object name found")
                } else if by_get_only && a.verb != "get" {
                    no("can only get individual resources of this type")
                } else if self.related(node, a) {
                    allow()
                } else {
                    no(&format!("no relationship found between node '{node}' and this object"))
                }
            }
            // Kubus's kubelet reads its pods' ServiceAccounts (their image pull secrets).
            ("", "serviceaccounts", "") if read => match a.verb == "get" && self.related(node, a) {
                true => allow(),
                false => no(&format!("no relationship found between node '{node}' and this object")),
            },
            ("", "serviceaccounts", "token") => {
                if a.verb == "create" && self.related(node, a) {
                    allow()
                } else {
                    no("can only create tokens for individual service accounts")
                }
            }
            ("", "nodes", _) if !read && a.verb != "create" && a.name != node => {
                deny(format!("node {node:?} is not allowed to modify node {:?}", a.name))
            }
            ("", "pods", "") if a.verb == "delete" => match self.pod_is_on(node, &a.namespace, &a.name) {
                true => allow(),
                false => deny(format!("node {node:?} can only delete pods with spec.nodeName set to itself")),
            },
            ("", "pods", "status") if matches!(a.verb.as_str(), "update" | "patch") => {
                match self.pod_is_on(node, &a.namespace, &a.name) {
                    true => allow(),
                    false => deny(format!(
                        "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                    )),
                }
            }
            ("", "pods", "eviction") if a.verb == "create" => match self.pod_is_on(node, &a.namespace, &a.name) {
                true => allow(),
                false => deny(format!("node {node:?} can only evict pods with spec.nodeName set to itself")),
            },
            ("", "pods", "") if a.verb == "create" => {
                deny(format!("node {node:?} can only create mirror pods, and Kubus nodes run no static pods"))
            }
            // A node writes its pods' status, never their spec or labels.
            ("", "pods", _) if !read => no(""),
            ("coordination.k8s.io", "leases", "") if !(read && a.name.is_empty()) => {
                if a.namespace != NODE_LEASE_NAMESPACE {
                    deny(format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"))
                } else if a.verb != "create" && a.name != node {
                    // (a create's name is in its body: NodeRestriction admission checks it)
                    deny(format!("can only access node lease with the same name as {node:?}"))
                } else {
                    allow()
                }
            }
            ("discovery.k8s.io", "endpointslices", "") if matches!(a.verb.as_str(), "list" | "watch") => allow(),
            _ if self.rules.iter().any(|r| r.allows(a)) => allow(),
            _ => no(""),
        }
    }
}

impl NodeAuthorizer {
    /// Whether the PersistentVolume `name` is pinned to `node` (local-path volumes are): the
    /// only volumes a node may delete (the RBAC role of the provisioner grants the verb).
    pub fn volume_is_on(&self, node: &str, name: &str) -> bool {
        self.cache
            .get(&(String::new(), "persistentvolumes".into()), &(String::new(), name.to_string()))
            .and_then(|pv| pv.decode::<Value>().ok())
            .is_some_and(|pv| pinned_to(&pv, node))
    }
}

/// Whether every node selector term of PersistentVolume `pv` requires host `node`
/// (`kubernetes.io/hostname In [node]`), as the local-path provisioner pins its volumes.
pub fn pinned_to(pv: &Value, node: &str) -> bool {
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"].as_array().is_some_and(|terms| {
        !terms.is_empty()
            && terms.iter().all(|t| {
                t["matchExpressions"].as_array().into_iter().flatten().any(|e| {
                    e["key"] == "kubernetes.io/hostname"
                        && e["operator"] == "In"
                        && e["values"].as_array().is_some_and(|v| v.len() == 1 && v[0] == node)
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::UserInfo;
    use kubus_bus::{EventType, Key};
    use serde_json::json;

    fn put(cache: &WatchCache, resource: &str, ns: Option<&str>, value: Value, revision: u64) {
        let name = value["metadata"]["name"].as_str().unwrap().to_string();
        cache.apply(kubus_bus::Event {
            kind: EventType::Added,
            key: Key::new("", resource, ns, &name),
            revision,
            value: bytes::Bytes::from(value.to_string()),
        });
    }

    fn cluster() -> NodeAuthorizer {
        let cache = WatchCache::new(100);
        cache.replace(Vec::new(), Vec::new(), 1);
        let authorizer = NodeAuthorizer::new(cache.clone());
        let pod = |name: &str, node: &str, spec: Value| {
            let mut spec = spec;
            spec["nodeName"] = node.into();
            json!({"metadata": {"name": name, "namespace": "team"}, "spec": spec})
        };
        put(
            &cache,
            "pods",
            Some("team"),
            pod(
                "on-a",
                "a",
                json!({
            "serviceAccountName": "runner",
            "volumes": [{"name": "s", "secret": {"secretName": "a-secret"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "a-claim"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "a-projected"}}]}}],
            "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "a-env"}}]}],
            "imagePullSecrets": [{"name": "a-pull"}]}),
            ),
            2,
        );
        put(
            &cache,
            "pods",
            Some("team"),
            pod(
                "on-b",
                "b",
                json!({
            "volumes": [{"name": "s", "secret": {"secretName": "b-secret"}}],
            "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "b-env", "key": "k"}}}]}]}),
            ),
            3,
        );
        let claim = json!({"metadata": {"name": "a-claim", "namespace": "team"}, "spec": {"volumeName": "pv-a"}});
        put(&cache, "persistentvolumeclaims", Some("team"), claim, 4);
        let pinned = json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]});
        let pv = json!({"metadata": {"name": "pv-a"}, "spec": {"nodeAffinity": {"required": pinned}}});
        put(&cache, "persistentvolumes", None, pv, 5);
        authorizer
    }

    fn node(name: &str) -> UserInfo {
        UserInfo::new(&format!("system:node:{name}"), &[NODES_GROUP, "system:authenticated"])
    }

    #[test]
    fn a_node_reads_only_what_its_pods_use() {
        let z = cluster();
        let ask = |user: &UserInfo, verb: &str, resource: &str, ns: &str, name: &str| {
            z.authorize(&Attributes::resource(user, verb, "", resource, ns, name))
        };
        let (a, b) = (node("a"), node("b"));
        for (resource, name) in [
            ("secrets", "a-secret"),
            ("secrets", "a-pull"),
            ("configmaps", "a-projected"),
            ("configmaps", "a-env"),
            ("persistentvolumeclaims", "a-claim"),
            ("serviceaccounts", "runner"),
        ] {
            assert!(ask(&a, "get", resource, "team", name).allowed(), "{resource}/{name}");
            let refused = ask(&b, "get", resource, "team", name);
            assert!(!refused.allowed(), "node b reads {resource}/{name}");
            assert_eq!(refused.reason(), "no relationship found between node 'b' and this object");
        }
        assert!(ask(&b, "get", "secrets", "team", "b-env").allowed());
        assert!(ask(&a, "get", "persistentvolumes", "", "pv-a").allowed());
        assert!(!ask(&b, "get", "persistentvolumes", "", "pv-a").allowed());
        assert!(ask(&a, "create", "serviceaccounts/token", "team", "runner").allowed());
        assert!(!ask(&b, "create", "serviceaccounts/token", "team", "runner").allowed());
        // No listing of every Secret, no writing one, with upstream's reasons.
        assert_eq!(ask(&a, "list", "secrets", "team", "").reason(), "No Object name found");
        assert_eq!(ask(&a, "update", "secrets", "team", "a-secret").reason(), "can only read resources of this type");
        assert!(!ask(&a, "list", "persistentvolumeclaims", "team", "a-claim").allowed());
        // Its own volumes only may it delete (RBAC then decides); its pods' spec it never writes.
        assert!(matches!(ask(&a, "delete", "persistentvolumes", "", "pv-a"), Decision::NoOpinion(_)));
        assert!(matches!(ask(&b, "delete", "persistentvolumes", "", "pv-a"), Decision::Deny(_)));
        assert!(!ask(&a, "patch", "pods", "team", "on-a").allowed());
        assert!(ask(&a, "delete", "pods", "team", "on-a").allowed());
        // Its own Node, Lease and pods only.
        assert!(ask(&a, "patch", "nodes/status", "", "a").allowed());
        assert!(matches!(ask(&a, "patch", "nodes/status", "", "b"), Decision::Deny(_)));
        assert!(matches!(ask(&a, "delete", "nodes", "", "b"), Decision::Deny(_)));
        assert!(ask(&a, "get", "nodes", "", "b").allowed() && ask(&a, "create", "nodes", "", "").allowed());
        assert!(ask(&a, "update", "pods/status", "team", "on-a").allowed());
        let other = ask(&a, "update", "pods/status", "team", "on-b");
        assert_eq!(other.reason(), r#"node "a" can only update pod status for pods with spec.nodeName set to itself"#);
        assert!(matches!(ask(&a, "delete", "pods", "team", "on-b"), Decision::Deny(_)));
        assert!(ask(&a, "list", "pods", "", "").allowed());
        let lease = |user: &UserInfo, verb: &str, ns: &str, name: &str| {
            z.authorize(&Attributes::resource(user, verb, "coordination.k8s.io", "leases", ns, name))
        };
        assert!(lease(&a, "update", NODE_LEASE_NAMESPACE, "a").allowed());
        assert!(!lease(&a, "update", NODE_LEASE_NAMESPACE, "b").allowed());
        assert!(!lease(&a, "update", "kube-system", "kube-scheduler").allowed());
        // kube-proxy's reads; and nothing for users who are not nodes.
        let slices = Attributes::resource(&a, "watch", "discovery.k8s.io", "endpointslices", "", "");
        assert!(z.authorize(&slices).allowed());
        let not_a_node = UserInfo::new("system:node:a", &["system:authenticated"]);
        assert!(matches!(ask(&not_a_node, "get", "secrets", "team", "a-secret"), Decision::NoOpinion(_)));
    }
}
