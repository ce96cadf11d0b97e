//! The default roles and bindings (upstream's bootstrap policy), reconciled at every API server
//! start as upstream's rbac/bootstrap-roles hook does: missing objects are created, and objects
//! that allow it (annotation `rbac.authorization.kubernetes.io/autoupdate` not "false") get the
//! rules, labels, annotations and subjects they lack. Aggregated roles (admin, edit, view) get
//! their rules from the roles they select.

use super::escalation::uncovered;
use super::rbac::{PolicyRule, GROUP};
use crate::storage::Storage;
use kubus_apimachinery::{resource, StatusError};
use serde_json::{json, Value};

pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

pub(super) const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

pub(super) fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}
fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources, "resourceNames": names})
}
fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}
pub(super) fn events() -> [Value; 2] {
    [
        rule(&["create", "update", "patch"], &[""], &["events"]),
        rule(&["create", "update", "patch"], &["events.k8s.io"], &["events"]),
    ]
}

pub(super) fn cluster_role(
    name: &str,
    labels: &[(&str, &str)],
    rules: Vec<Value>,
    aggregate_from: Option<&str>,
) -> Value {
    let mut l = serde_json::Map::new();
    l.insert(BOOTSTRAPPING.0.into(), BOOTSTRAPPING.1.into());
    for (k, v) in labels {
        l.insert((*k).into(), (*v).into());
    }
    let mut role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": l, "annotations": {AUTOUPDATE: "true"}}, "rules": rules});
    if let Some(label) = aggregate_from {
        role["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
    }
    role
}

/// Upstream's default ClusterRoles (the ones Kubus's components and users rely on).
/// Kubus's own roles for its node agents (named as Kubus's, not upstream's).
pub const LOCAL_PATH_PROVISIONER_ROLE: &str = "kubus:local-path-provisioner";
pub const NODES_CLUSTER_CONFIG_ROLE: &str = "kubus:nodes-cluster-config";
/// The ConfigMap (in kube-system) where `kubus up` publishes the cluster's network settings.
pub const CLUSTER_CONFIG_MAP: &str = "kubus-cluster-config";

/// Upstream's node rules (the `system:node` ClusterRole's; the Node authorizer grants them to
/// each node's agent, narrowed to its own objects). System:node writes core Events only.
pub fn node_rules() -> Vec<Value> {
    let core = &[""];
    let mut node = vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews", "localsubjectaccessreviews"]),
        rule(READ, core, &["services"]),
        rule(&["create", "get", "list", "watch"], core, &["nodes"]),
        rule(&["update", "patch"], core, &["nodes/status"]),
        rule(&["update", "patch"], core, &["nodes"]),
        rule(READ, core, &["pods"]),
        rule(&["create", "delete"], core, &["pods"]),
        rule(&["update", "patch"], core, &["pods/status"]),
        rule(&["create"], core, &["pods/eviction"]),
        // The Node authorizer narrows these to what the node's own pods use.
        rule(READ, core, &["secrets", "configmaps"]),
        rule(&["get"], core, &["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["get"], core, &["endpoints"]),
        rule(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"]),
        rule(&["get", "update", "patch"], core, &["persistentvolumeclaims/status"]),
        rule(&["create"], core, &["serviceaccounts/token"]),
        rule(&["get", "create", "update", "patch", "delete"], &["coordination.k8s.io"], &["leases"]),
        rule(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
        rule(READ, &["storage.k8s.io"], &["csidrivers"]),
        rule(&["create", "delete", "get", "patch", "update"], &["storage.k8s.io"], &["csinodes"]),
        rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
    ];
    node.push(rule(&["create", "update", "patch"], core, &["events"]));
    node
}

pub fn cluster_roles() -> Vec<Value> {
    let core = &[""];
    let mut node_proxier = vec![
        rule(&["list", "watch"], core, &["services", "endpoints"]),
        rule(READ, core, &["nodes"]),
        rule(&["list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
    ];
    node_proxier.extend(events());
    let mut scheduler = events().to_vec();
    scheduler.extend([
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(&["get", "update"], &["coordination.k8s.io"], &["leases"], &["kube-scheduler"]),
        rule(READ, core, &["nodes"]),
        rule(READ, core, &["pods"]),
        rule(&["delete"], core, &["pods"]),
        rule(&["create"], core, &["pods/binding", "bindings"]),
        rule(&["patch", "update"], core, &["pods/status"]),
        rule(
            READ,
            core,
            &["replicationcontrollers", "services", "namespaces", "persistentvolumes", "persistentvolumeclaims"],
        ),
        rule(READ, &["apps", "extensions"], &["replicasets"]),
        rule(READ, &["apps"], &["statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(READ, &["storage.k8s.io"], &["csinodes", "csidrivers", "csistoragecapacities"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
    ]);
    let mut controller_manager = events().to_vec();
    controller_manager.extend([
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(&["get", "update"], &["coordination.k8s.io"], &["leases"], &["kube-controller-manager"]),
        rule(&["create"], core, &["secrets", "serviceaccounts"]),
        rule(&["delete"], core, &["secrets"]),
        rule(&["get"], core, &["configmaps", "namespaces", "secrets", "serviceaccounts"]),
        rule(&["update"], core, &["secrets", "serviceaccounts"]),
        rule(&["create"], core, &["serviceaccounts/token"]),
        rule(&["list", "watch"], &["*"], &["*"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
    ]);
    let node = node_rules();
    vec![
        cluster_role("cluster-admin", &[], vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])], None),
        cluster_role(
            "system:discovery",
            &[],
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
            None,
        ),
        cluster_role("system:public-info-viewer", &[], vec![urls(&["get"], crate::authn::PUBLIC_INFO_PATHS)], None),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
            None,
        ),
        cluster_role("admin", &[], vec![], Some(TO_ADMIN)),
        cluster_role("edit", &[(TO_ADMIN, "true")], vec![], Some(TO_EDIT)),
        cluster_role("view", &[(TO_EDIT, "true")], vec![], Some(TO_VIEW)),
        cluster_role(
            "system:aggregate-to-admin",
            &[(TO_ADMIN, "true")],
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
                rule(READ_WRITE, &[GROUP], &["roles", "rolebindings"]),
            ],
            None,
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(TO_EDIT, "true")],
            vec![
                rule(&["impersonate"], core, &["serviceaccounts"]),
                rule(WRITE, core, &["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
                rule(&["create"], core, &["pods/eviction"]),
                rule(
                    WRITE,
                    core,
                    &[
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                        "persistentvolumeclaims",
                        "configmaps",
                        "secrets",
                        "events",
                    ],
                ),
                rule(&["create"], core, &["serviceaccounts/token"]),
                rule(
                    WRITE,
                    &["apps"],
                    &[
                        "statefulsets",
                        "statefulsets/scale",
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "deployments/rollback",
                        "replicasets",
                        "replicasets/scale",
                    ],
                ),
                rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
                rule(WRITE, &["batch"], &["jobs", "cronjobs"]),
                rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
                rule(
                    WRITE,
                    &["extensions"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "ingresses",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers/scale",
                    ],
                ),
                rule(WRITE, &["networking.k8s.io"], &["networkpolicies", "ingresses"]),
                rule(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
                rule(
                    READ,
                    core,
                    &["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"],
                ),
            ],
            None,
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(TO_VIEW, "true")],
            vec![
                rule(
                    READ,
                    core,
                    &[
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "configmaps",
                    ],
                ),
                rule(
                    READ,
                    core,
                    &[
                        "limitranges",
                        "resourcequotas",
                        "bindings",
                        "events",
                        "pods/status",
                        "resourcequotas/status",
                        "namespaces/status",
                        "replicationcontrollers/status",
                        "pods/log",
                    ],
                ),
                rule(READ, core, &["namespaces"]),
                rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(
                    READ,
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "statefulsets",
                        "statefulsets/status",
                        "statefulsets/scale",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/status",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/status",
                        "replicasets/scale",
                    ],
                ),
                rule(READ, &["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
                rule(READ, &["batch"], &["jobs", "cronjobs", "cronjobs/status", "jobs/status"]),
                rule(
                    READ,
                    &["extensions"],
                    &[
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "ingresses",
                        "ingresses/status",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "replicationcontrollers/scale",
                    ],
                ),
                rule(READ, &["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"]),
                rule(READ, &["networking.k8s.io"], &["networkpolicies", "ingresses", "ingresses/status"]),
            ],
            None,
        ),
        cluster_role("system:node", &[], node, None),
        cluster_role("system:node-proxier", &[], node_proxier, None),
        cluster_role("system:kube-scheduler", &[], scheduler, None),
        cluster_role("system:kube-controller-manager", &[], controller_manager, None),
        // Upstream's role has endpoints and services only; Kubus's DNS reads EndpointSlices, as
        // CoreDNS's own role allows it to.
        cluster_role(
            "system:kube-dns",
            &[],
            vec![
                rule(&["list", "watch"], core, &["endpoints", "services"]),
                rule(&["list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
            ],
            None,
        ),
        cluster_role(
            "system:volume-scheduler",
            &[],
            vec![
                rule(&["get", "list", "patch", "update", "watch"], core, &["persistentvolumes"]),
                rule(READ, &["storage.k8s.io"], &["storageclasses"]),
                rule(&["get", "list", "patch", "update", "watch"], core, &["persistentvolumeclaims"]),
            ],
            None,
        ),
        cluster_role(
            "system:monitoring",
            &[],
            vec![urls(
                &["get"],
                &["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"],
            )],
            None,
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![urls(&["get"], &["/.well-known/openid-configuration", "/openid/v1/jwks"])],
            None,
        ),
        cluster_role(
            "system:kubelet-api-admin",
            &[],
            vec![
                rule(READ, core, &["nodes"]),
                rule(&["proxy"], core, &["nodes"]),
                rule(&["*"], core, &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"]),
            ],
            None,
        ),
        cluster_role(
            "system:node-bootstrapper",
            &[],
            vec![rule(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"])],
            None,
        ),
        cluster_role(
            "system:node-problem-detector",
            &[],
            [rule(&["get"], core, &["nodes"]), rule(&["patch"], core, &["nodes/status"])]
                .into_iter()
                .chain(events())
                .collect(),
            None,
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            &[],
            [
                rule(&["create", "delete", "get", "list", "watch"], core, &["persistentvolumes"]),
                rule(&["get", "list", "update", "watch"], core, &["persistentvolumeclaims"]),
                rule(READ, &["storage.k8s.io"], &["storageclasses"]),
                rule(&["watch"], core, &["events"]),
            ]
            .into_iter()
            .chain(events())
            .collect(),
            None,
        ),
        cluster_role(
            "system:heapster",
            &[],
            vec![
                rule(READ, core, &["events", "namespaces", "nodes", "pods"]),
                rule(READ, &["extensions"], &["deployments"]),
            ],
            None,
        ),
        cluster_role("system:kube-aggregator", &[], vec![rule(READ, core, &["endpoints", "services"])], None),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[],
            vec![rule(&["create"], &["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"])],
            None,
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[],
            vec![rule(&["create"], &["certificates.k8s.io"], &["certificatesigningrequests/selfnodeclient"])],
            None,
        ),
        approver("kube-apiserver-client-approver", "kubernetes.io/kube-apiserver-client"),
        approver("kube-apiserver-client-kubelet-approver", "kubernetes.io/kube-apiserver-client-kubelet"),
        approver("kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
        approver("legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
        // Kubus's node agents provision local-path volumes for their own node (k3s grants its
        // local-path-provisioner the same through a role of its own).
        cluster_role(
            LOCAL_PATH_PROVISIONER_ROLE,
            &[],
            [
                rule(&["create", "delete", "get", "list", "watch"], core, &["persistentvolumes"]),
                rule(&["get", "list", "watch"], core, &["persistentvolumeclaims"]),
                rule(READ, &["storage.k8s.io"], &["storageclasses"]),
            ]
            .into_iter()
            .chain(events())
            .collect(),
            None,
        ),
        // Node agents joining read the cluster's network settings, as kubeadm's nodes read its
        // kubeadm-config ConfigMap.
        cluster_role(
            NODES_CLUSTER_CONFIG_ROLE,
            &[],
            vec![named(&["get"], core, &["configmaps"], &[CLUSTER_CONFIG_MAP])],
            None,
        ),
        cluster_role(
            "system:auth-delegator",
            &[],
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
            ],
            None,
        ),
    ]
    .into_iter()
    .chain(super::controller_roles::cluster_roles())
    .collect()
}

/// A role that may approve the certificate requests of one signer.
fn approver(name: &str, signer: &str) -> Value {
    let rule = named(&["approve"], &["certificates.k8s.io"], &["signers"], &[signer]);
    cluster_role(&format!("system:certificates.k8s.io:{name}"), &[], vec![rule], None)
}

pub(super) fn binding(role: &str, subjects: Vec<Value>) -> Value {
    named_binding(role, role, subjects)
}
fn named_binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {BOOTSTRAPPING.0: BOOTSTRAPPING.1}, "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects})
}
fn group(name: &str) -> Value {
    json!({"kind": "Group", "apiGroup": GROUP, "name": name})
}
fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": GROUP, "name": name})
}

/// Upstream's default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    use crate::authn::*;
    vec![
        binding("cluster-admin", vec![group(SYSTEM_PRIVILEGED_GROUP)]),
        binding("system:discovery", vec![group(ALL_AUTHENTICATED)]),
        binding("system:basic-user", vec![group(ALL_AUTHENTICATED)]),
        binding("system:public-info-viewer", vec![group(ALL_AUTHENTICATED), group(ALL_UNAUTHENTICATED)]),
        // Nodes are authorized by the Node authorizer; the binding exists without subjects.
        binding("system:node", vec![]),
        binding("system:node-proxier", vec![user(KUBE_PROXY)]),
        binding("system:kube-controller-manager", vec![user(KUBE_CONTROLLER_MANAGER)]),
        binding("system:kube-scheduler", vec![user(KUBE_SCHEDULER)]),
        binding("system:volume-scheduler", vec![user(KUBE_SCHEDULER)]),
        binding("system:monitoring", vec![group("system:monitoring")]),
        binding(LOCAL_PATH_PROVISIONER_ROLE, vec![group(NODES_GROUP)]),
        binding(NODES_CLUSTER_CONFIG_ROLE, vec![group(NODES_GROUP)]),
        binding("system:service-account-issuer-discovery", vec![group(SERVICE_ACCOUNTS_GROUP)]),
        // kubeadm's bindings for its node tokens (`kubus token create` makes such tokens): they
        // may ask for a node's client certificate, which is what joining grants.
        named_binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            vec![group(bootstrap::DEFAULT_NODE_TOKEN_GROUP)],
        ),
        named_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![group(bootstrap::DEFAULT_NODE_TOKEN_GROUP)],
        ),
        binding(
            "system:kube-dns",
            vec![json!({"kind": "ServiceAccount", "name": "kube-dns", "namespace": "kube-system"})],
        ),
    ]
    .into_iter()
    .chain(super::controller_roles::cluster_role_bindings())
    .collect()
}

fn may_update(existing: &Value) -> bool {
    existing["metadata"]["annotations"][AUTOUPDATE].as_str() != Some("false")
}

/// Adds the labels and annotations `expected` has and `existing` lacks.
fn merge_meta(out: &mut Value, expected: &Value) -> bool {
    let mut changed = false;
    for key in ["labels", "annotations"] {
        if let Some(want) = expected["metadata"][key].as_object() {
            for (k, v) in want {
                if out["metadata"][key].get(k).is_none() {
                    out["metadata"][key][k] = v.clone();
                    changed = true;
                }
            }
        }
    }
    changed
}

/// The role `existing` reconciled with the default `expected` (None: nothing to change).
pub fn reconcile_role(existing: &Value, expected: &Value) -> Option<Value> {
    if !may_update(existing) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_meta(&mut out, expected);
    if let Some(want) = expected["aggregationRule"]["clusterRoleSelectors"].as_array() {
        let have = out["aggregationRule"]["clusterRoleSelectors"].as_array().cloned().unwrap_or_default();
        for s in want.iter().filter(|s| !have.contains(s)) {
            let mut list = out["aggregationRule"]["clusterRoleSelectors"].as_array().cloned().unwrap_or_default();
            list.push(s.clone());
            out["aggregationRule"]["clusterRoleSelectors"] = Value::Array(list);
            changed = true;
        }
    } else {
        let have: Vec<PolicyRule> = out["rules"].as_array().into_iter().flatten().map(PolicyRule::from_json).collect();
        for r in expected["rules"].as_array().into_iter().flatten() {
            if !uncovered(&have, &[PolicyRule::from_json(r)]).is_empty() {
                let mut list = out["rules"].as_array().cloned().unwrap_or_default();
                list.push(r.clone());
                out["rules"] = Value::Array(list);
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The binding `existing` reconciled with the default `expected`: the subjects it lacks.
pub fn reconcile_binding(existing: &Value, expected: &Value) -> Option<Value> {
    if !may_update(existing) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_meta(&mut out, expected);
    for s in expected["subjects"].as_array().into_iter().flatten() {
        let have = out["subjects"].as_array().cloned().unwrap_or_default();
        let same = |h: &Value| h["kind"] == s["kind"] && h["name"] == s["name"] && h["namespace"] == s["namespace"];
        if !have.iter().any(same) {
            let mut list = have;
            list.push(s.clone());
            out["subjects"] = Value::Array(list);
            changed = true;
        }
    }
    changed.then_some(out)
}

/// Creates or reconciles every default role and binding, then fills the aggregated roles.
pub async fn reconcile(storage: &Storage) -> Result<(), StatusError> {
    let roles = resource::find(GROUP, "v1", "clusterroles").expect("clusterroles are served");
    let bindings = resource::find(GROUP, "v1", "clusterrolebindings").expect("clusterrolebindings are served");
    let opts = Default::default();
    for (info, objects, reconcile_one) in [
        (roles, cluster_roles(), reconcile_role as fn(&Value, &Value) -> Option<Value>),
        (bindings, cluster_role_bindings(), reconcile_binding),
    ] {
        for expected in objects {
            let name = expected["metadata"]["name"].as_str().unwrap_or_default().to_string();
            match storage.get(info, None, &name).await {
                Err(e) if e.code == 404 => match storage.create(info, None, expected, &opts).await {
                    Ok(_) => tracing::info!(resource = info.resource, %name, "created the default RBAC object"),
                    Err(e) if e.code == 409 => {}
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
                Ok(existing) => {
                    if let Some(new) = reconcile_one(&existing, &expected) {
                        storage.update(info, None, &name, None, new, &opts).await?;
                        tracing::info!(resource = info.resource, %name, "reconciled the default RBAC object");
                    }
                }
            }
        }
    }
    // Aggregated roles as the aggregation controller keeps them, so they work from the start.
    storage.cache.wait_fresh(&storage.store).await?;
    let (all, _) = storage.cache.list(&(GROUP.into(), "clusterroles".into()), None);
    let mut all: Vec<Value> = all.iter().map(|r| r.value()).collect();
    for i in kubus_apimachinery::rbac::aggregate_all(&mut all) {
        let name = all[i]["metadata"]["name"].as_str().unwrap_or_default().to_string();
        match storage.update(roles, None, &name, None, all[i].clone(), &opts).await {
            // Changed meanwhile: the aggregation controller takes it from here.
            Ok(_) | Err(StatusError { code: 409, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_rules_and_subjects_are_added_unless_autoupdate_is_off() {
        let expected = cluster_roles().into_iter().find(|r| r["metadata"]["name"] == "system:kube-dns").unwrap();
        let mut existing = expected.clone();
        existing["rules"] = json!([{"apiGroups": [""], "resources": ["endpoints", "services"], "verbs": ["list", "watch"]},
                                   {"apiGroups": ["x"], "resources": ["y"], "verbs": ["get"]}]);
        existing["metadata"]["labels"] = json!({});
        let out = reconcile_role(&existing, &expected).unwrap();
        let rules = out["rules"].as_array().unwrap();
        // The user's extra rule stays, the covered default is not repeated, the missing one is added.
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2]["apiGroups"], json!(["discovery.k8s.io"]));
        assert_eq!(out["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults");
        assert!(reconcile_role(&out, &expected).is_none());
        existing["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert!(reconcile_role(&existing, &expected).is_none());

        let expected = cluster_role_bindings().into_iter().find(|b| b["metadata"]["name"] == "cluster-admin").unwrap();
        let mut existing = expected.clone();
        existing["subjects"] = json!([{"kind": "User", "name": "root"}]);
        let out = reconcile_binding(&existing, &expected).unwrap();
        assert_eq!(out["subjects"].as_array().unwrap().len(), 2);
        assert!(reconcile_binding(&out, &expected).is_none());
    }

    #[test]
    fn defaults_grant_what_upstream_does() {
        use super::super::rbac::{tests::Fixed, Rbac};
        use super::super::{Attributes, Authorizer};
        let mut f = Fixed::default();
        let mut roles = cluster_roles();
        kubus_apimachinery::rbac::aggregate_all(&mut roles);
        for r in roles {
            f.add("clusterroles", r);
        }
        for b in cluster_role_bindings() {
            f.add("clusterrolebindings", b);
        }
        // view aggregates into edit and admin through the labels.
        let edit = f.cluster_role_of("edit");
        let admin = f.cluster_role_of("admin");
        assert!(edit.iter().any(|r| r.resources.contains(&"pods/log".to_string())));
        assert!(admin.iter().any(|r| r.resources.contains(&"rolebindings".to_string())));
        f.add(
            "rolebindings",
            json!({"metadata": {"name": "v", "namespace": "a"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "viewer"}]}),
        );
        let rbac = Rbac { source: f };
        let viewer = crate::authn::UserInfo::new("viewer", &["system:authenticated"]);
        let anon = crate::authn::UserInfo::new("system:anonymous", &["system:unauthenticated"]);
        let can = |u: &crate::authn::UserInfo, verb: &str, res: &str, ns: &str| {
            rbac.authorize(&Attributes::resource(u, verb, "", res, ns, "")).allowed()
        };
        assert!(can(&viewer, "list", "pods", "a"));
        assert!(!can(&viewer, "list", "secrets", "a"));
        assert!(!can(&viewer, "delete", "pods", "a"));
        assert!(!can(&viewer, "list", "pods", "b"));
        let url =
            |u: &crate::authn::UserInfo, p: &str| rbac.authorize(&Attributes::non_resource(u, "get", p)).allowed();
        assert!(url(&viewer, "/apis/apps/v1"));
        assert!(url(&anon, "/healthz") && url(&anon, "/version"));
        assert!(!url(&anon, "/apis"));
        let kcm = crate::authn::UserInfo::new("system:kube-controller-manager", &["system:authenticated"]);
        assert!(rbac.authorize(&Attributes::resource(&kcm, "watch", "apps", "deployments", "", "")).allowed());
        let sa = crate::authn::UserInfo::new(
            "system:serviceaccount:kube-system:kube-dns",
            &["system:serviceaccounts", "system:authenticated"],
        );
        assert!(can(&sa, "watch", "services", ""));
        // The scheduler's volume rules come from system:volume-scheduler, bound to it as upstream.
        let scheduler = crate::authn::UserInfo::new("system:kube-scheduler", &["system:authenticated"]);
        let sched = |verb: &str, group: &str, res: &str| {
            rbac.authorize(&Attributes::resource(&scheduler, verb, group, res, "", "")).allowed()
        };
        assert!(sched("list", "storage.k8s.io", "storageclasses") && sched("patch", "", "persistentvolumeclaims"));
        assert!(!sched("delete", "", "persistentvolumes"));
        // Prometheus in system:monitoring reads /metrics; anonymous does not.
        let prometheus = crate::authn::UserInfo::new("prometheus", &["system:monitoring", "system:authenticated"]);
        assert!(url(&prometheus, "/metrics") && url(&prometheus, "/readyz/ping"));
        assert!(!url(&viewer, "/metrics") && !url(&anon, "/metrics"));
        // Service accounts may read the issuer's discovery documents.
        assert!(url(&sa, "/.well-known/openid-configuration") && url(&sa, "/openid/v1/jwks"));
        // edit reads and writes Leases, and the extensions group as upstream keeps it.
        edit_covers(&edit);
    }

    fn edit_covers(edit: &[PolicyRule]) {
        let has = |verb: &str, group: &str, res: &str| {
            edit.iter().any(|r| {
                [verb, "*"].iter().any(|v| r.verbs.contains(&v.to_string()))
                    && r.api_groups.contains(&group.to_string())
                    && r.resources.contains(&res.to_string())
            })
        };
        assert!(has("list", "coordination.k8s.io", "leases") && has("update", "coordination.k8s.io", "leases"));
        assert!(has("create", "extensions", "ingresses") && has("get", "extensions", "daemonsets"));
    }

    #[test]
    fn every_upstream_default_cluster_role_exists() {
        // kube-apiserver 1.32's default ClusterRoles (the per-controller system:controller:*
        // roles are those of the controllers Kubus runs: controller_roles.rs).
        let upstream = [
            "admin",
            "cluster-admin",
            "edit",
            "system:aggregate-to-admin",
            "system:aggregate-to-edit",
            "system:aggregate-to-view",
            "system:auth-delegator",
            "system:basic-user",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "system:certificates.k8s.io:kubelet-serving-approver",
            "system:certificates.k8s.io:legacy-unknown-approver",
            "system:discovery",
            "system:heapster",
            "system:kube-aggregator",
            "system:kube-controller-manager",
            "system:kube-dns",
            "system:kube-scheduler",
            "system:kubelet-api-admin",
            "system:monitoring",
            "system:node",
            "system:node-bootstrapper",
            "system:node-problem-detector",
            "system:node-proxier",
            "system:persistent-volume-provisioner",
            "system:public-info-viewer",
            "system:service-account-issuer-discovery",
            "system:volume-scheduler",
            "view",
        ];
        let mut ours: Vec<String> =
            cluster_roles().iter().map(|r| r["metadata"]["name"].as_str().unwrap().to_string()).collect();
        ours.sort();
        let all = ours.clone();
        ours.retain(|r| !r.starts_with(super::super::controller_roles::PREFIX));
        // Beside upstream's, only Kubus's own, under its own prefix.
        let (kubus, ours): (Vec<String>, Vec<String>) = ours.into_iter().partition(|r| r.starts_with("kubus:"));
        assert_eq!(kubus, [LOCAL_PATH_PROVISIONER_ROLE, NODES_CLUSTER_CONFIG_ROLE]);
        assert_eq!(ours, upstream);
        for b in cluster_role_bindings() {
            let role = b["roleRef"]["name"].as_str().unwrap().to_string();
            assert!(all.contains(&role), "binding {} to role {role}, which does not exist", b["metadata"]["name"]);
            // Named after its role, or kubeadm's own bindings under their names.
            let name = b["metadata"]["name"].as_str().unwrap();
            assert!(name == role || name.starts_with("kubeadm:"), "{name}");
        }
    }
}
