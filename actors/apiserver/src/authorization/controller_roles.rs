//! Upstream's per-controller roles (`system:controller:<name>`), each bound to the
//! ServiceAccount `kube-system/<name>` its controller acts as (the controller manager's
//! `--use-service-account-credentials`). Only the controllers Kubus runs have one.
//!
//! Kubus's controllers write some objects with merge patches where upstream's PUT them, so those
//! rules also grant `patch` (marked below): the same right to the same fields, by another verb.

use super::bootstrap::{binding, cluster_role, events, rule, READ};
use serde_json::{json, Value};

/// The prefix of every controller role and binding.
pub const PREFIX: &str = "system:controller:";
/// Where the controllers' ServiceAccounts live.
pub const NAMESPACE: &str = "kube-system";

/// (controller, its rules without the events rule every controller has)
fn controllers() -> Vec<(&'static str, Vec<Value>)> {
    let core = &[""];
    let apps = &["apps", "extensions"];
    vec![
        (
            "replicaset-controller",
            vec![
                rule(&["get", "list", "watch", "update"], apps, &["replicasets"]),
                // + patch
                rule(&["update", "patch"], apps, &["replicasets/status"]),
                rule(&["update"], apps, &["replicasets/finalizers"]),
                rule(&["list", "watch", "patch", "create", "delete"], core, &["pods"]),
            ],
        ),
        (
            "replication-controller",
            vec![
                rule(&["get", "list", "watch", "update"], core, &["replicationcontrollers"]),
                // + patch
                rule(&["update", "patch"], core, &["replicationcontrollers/status"]),
                rule(&["update"], core, &["replicationcontrollers/finalizers"]),
                rule(&["list", "watch", "patch", "create", "delete"], core, &["pods"]),
            ],
        ),
        (
            "deployment-controller",
            vec![
                // + patch (both)
                rule(&["get", "list", "watch", "update", "patch"], apps, &["deployments"]),
                rule(&["update", "patch"], apps, &["deployments/status"]),
                rule(&["update"], apps, &["deployments/finalizers"]),
                rule(&["get", "list", "watch", "create", "update", "patch", "delete"], apps, &["replicasets"]),
                rule(&["get", "list", "watch", "update"], core, &["pods"]),
            ],
        ),
        (
            "job-controller",
            vec![
                rule(&["get", "list", "watch", "update", "patch"], &["batch"], &["jobs"]),
                rule(&["update"], &["batch"], &["jobs/status", "jobs/finalizers"]),
                rule(&["list", "watch", "create", "delete", "patch"], core, &["pods"]),
            ],
        ),
        (
            "daemon-set-controller",
            vec![
                rule(READ, apps, &["daemonsets"]),
                // + patch
                rule(&["update", "patch"], apps, &["daemonsets/status"]),
                rule(&["update"], apps, &["daemonsets/finalizers"]),
                rule(&["list", "watch"], core, &["nodes"]),
                rule(&["list", "watch", "create", "delete", "patch"], core, &["pods"]),
                rule(&["create"], core, &["pods/binding"]),
                rule(
                    &["get", "list", "watch", "create", "delete", "update", "patch"],
                    &["apps"],
                    &["controllerrevisions"],
                ),
            ],
        ),
        (
            "statefulset-controller",
            vec![
                rule(&["list", "watch"], core, &["pods"]),
                rule(READ, &["apps"], &["statefulsets"]),
                // + patch
                rule(&["update", "patch"], &["apps"], &["statefulsets/status"]),
                rule(&["update"], &["apps"], &["statefulsets/finalizers"]),
                rule(&["get", "create", "delete", "update", "patch"], core, &["pods"]),
                rule(
                    &["get", "create", "delete", "update", "patch", "list", "watch"],
                    &["apps"],
                    &["controllerrevisions"],
                ),
                rule(&["get", "create", "list", "watch"], core, &["persistentvolumeclaims"]),
                // + patch
                rule(&["update", "delete", "patch"], core, &["persistentvolumeclaims"]),
                rule(&["update"], core, &["pods/finalizers"]),
            ],
        ),
        (
            "disruption-controller",
            vec![
                rule(READ, apps, &["deployments", "replicasets"]),
                rule(READ, core, &["replicationcontrollers"]),
                rule(READ, &["policy"], &["poddisruptionbudgets"]),
                rule(READ, &["apps"], &["statefulsets"]),
                rule(&["update"], &["policy"], &["poddisruptionbudgets/status"]),
                rule(&["patch", "update"], core, &["pods/status"]),
                rule(&["get"], &["*"], &["*/scale"]),
            ],
        ),
        (
            "persistent-volume-binder",
            vec![
                // + patch (all four)
                rule(&["get", "list", "watch", "update", "create", "delete", "patch"], core, &["persistentvolumes"]),
                rule(&["update", "patch"], core, &["persistentvolumes/status"]),
                rule(&["get", "list", "watch", "update", "patch"], core, &["persistentvolumeclaims"]),
                rule(&["update", "patch"], core, &["persistentvolumeclaims/status"]),
                rule(&["list", "watch", "get", "create", "delete"], core, &["pods"]),
                rule(READ, &["storage.k8s.io"], &["storageclasses"]),
                rule(&["list", "watch"], core, &["nodes"]),
                rule(&["watch"], core, &["events"]),
                rule(&["get"], core, &["services"]),
            ],
        ),
        (
            "resourcequota-controller",
            vec![rule(&["list", "watch"], &["*"], &["*"]), rule(&["update"], core, &["resourcequotas/status"])],
        ),
        (
            "cronjob-controller",
            vec![
                rule(&["get", "list", "watch", "update"], &["batch"], &["cronjobs"]),
                rule(&["get", "list", "watch", "create", "update", "delete", "patch"], &["batch"], &["jobs"]),
                rule(&["update"], &["batch"], &["cronjobs/status", "cronjobs/finalizers"]),
                rule(&["list", "watch", "delete"], core, &["pods"]),
            ],
        ),
        ("ttl-after-finished-controller", vec![rule(&["get", "list", "watch", "delete"], &["batch"], &["jobs"])]),
        (
            "horizontal-pod-autoscaler",
            vec![
                rule(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
                rule(&["update"], &["autoscaling"], &["horizontalpodautoscalers/status"]),
                // + patch
                rule(&["get", "update", "patch"], &["*"], &["*/scale"]),
                rule(&["list", "watch"], core, &["pods"]),
                rule(&["list", "watch"], &["metrics.k8s.io"], &["pods"]),
                rule(READ, &["custom.metrics.k8s.io", "external.metrics.k8s.io"], &["*"]),
            ],
        ),
        (
            "namespace-controller",
            vec![
                rule(&["get", "list", "watch", "delete"], core, &["namespaces"]),
                rule(&["update"], core, &["namespaces/finalize", "namespaces/status"]),
                rule(&["get", "list", "watch", "delete", "deletecollection"], &["*"], &["*"]),
            ],
        ),
        ("service-account-controller", vec![rule(&["create"], core, &["serviceaccounts"])]),
        (
            "generic-garbage-collector",
            vec![rule(&["get", "list", "watch", "patch", "update", "delete"], &["*"], &["*"])],
        ),
        (
            "endpoint-controller",
            vec![
                rule(READ, core, &["services", "pods"]),
                rule(&["get", "list", "watch", "create", "update", "delete"], core, &["endpoints"]),
                rule(&["create"], core, &["endpoints/restricted"]),
            ],
        ),
        (
            "endpointslice-controller",
            vec![
                rule(READ, core, &["services", "pods", "nodes"]),
                rule(&["update"], core, &["services/finalizers"]),
                rule(
                    &["get", "list", "watch", "create", "update", "delete"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
        ),
        (
            "node-controller",
            vec![
                rule(&["get", "list", "watch", "update", "delete", "patch"], core, &["nodes"]),
                rule(&["patch", "update"], core, &["nodes/status", "pods/status"]),
                rule(&["list", "watch", "get", "delete"], core, &["pods"]),
            ],
        ),
        (
            "clusterrole-aggregation-controller",
            vec![rule(
                &["escalate", "get", "list", "watch", "update", "patch"],
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
            )],
        ),
        ("root-ca-cert-publisher", vec![rule(&["create", "update"], core, &["configmaps"])]),
    ]
}

/// The users the controllers act as.
pub fn users() -> Vec<String> {
    controllers().into_iter().map(|(name, _)| format!("system:serviceaccount:{NAMESPACE}:{name}")).collect()
}

/// The controllers upstream's roles give no events rule.
const WITHOUT_EVENTS: &[&str] = &["namespace-controller"];

/// The `system:controller:*` ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    controllers()
        .into_iter()
        .map(|(name, mut rules)| {
            if !WITHOUT_EVENTS.contains(&name) {
                rules.extend(events());
            }
            cluster_role(&format!("{PREFIX}{name}"), &[], rules, None)
        })
        .collect()
}

/// Each role bound to its controller's ServiceAccount.
pub fn cluster_role_bindings() -> Vec<Value> {
    controllers()
        .into_iter()
        .map(|(name, _)| {
            let subject = json!({"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE});
            binding(&format!("{PREFIX}{name}"), vec![subject])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::rbac::{tests::Fixed, Rbac};
    use super::super::{Attributes, Authorizer};
    use super::*;

    /// What each of Kubus's controllers sends the API server (read from its code), and a few
    /// things it must not be able to do.
    #[test]
    fn each_controller_may_do_what_it_does_and_no_more() {
        let mut f = Fixed::default();
        for r in cluster_roles() {
            f.add("clusterroles", r);
        }
        for b in cluster_role_bindings() {
            f.add("clusterrolebindings", b);
        }
        let rbac = Rbac { source: f };
        let may = |sa: &str, verb: &str, group: &str, resource: &str| {
            let groups = crate::authn::service_account_groups(NAMESPACE);
            let user = crate::authn::UserInfo::new(
                &format!("system:serviceaccount:{NAMESPACE}:{sa}"),
                &[&groups[0], &groups[1], "system:authenticated"],
            );
            rbac.authorize(&Attributes::resource(&user, verb, group, resource, "team", "x")).allowed()
        };
        let every_recorder = ["create", "patch"].map(|verb| (verb, "", "events"));
        type Call<'a> = (&'a str, &'a str, &'a str);
        let does: &[(&str, &[Call])] = &[
            (
                "replicaset-controller",
                &[
                    ("create", "", "pods"),
                    ("patch", "", "pods"),
                    ("delete", "", "pods"),
                    ("patch", "apps", "replicasets/status"),
                ],
            ),
            ("replication-controller", &[("create", "", "pods"), ("patch", "", "replicationcontrollers/status")]),
            (
                "deployment-controller",
                &[
                    ("create", "apps", "replicasets"),
                    ("patch", "apps", "replicasets"),
                    ("get", "apps", "replicasets"),
                    ("delete", "apps", "replicasets"),
                    ("patch", "apps", "deployments"),
                    ("patch", "apps", "deployments/status"),
                ],
            ),
            (
                "job-controller",
                &[
                    ("create", "", "pods"),
                    ("delete", "", "pods"),
                    ("patch", "", "pods"),
                    ("update", "batch", "jobs/status"),
                ],
            ),
            (
                "daemon-set-controller",
                &[
                    ("create", "", "pods"),
                    ("patch", "apps", "daemonsets/status"),
                    ("create", "apps", "controllerrevisions"),
                    ("patch", "apps", "controllerrevisions"),
                    ("delete", "apps", "controllerrevisions"),
                ],
            ),
            (
                "statefulset-controller",
                &[
                    ("create", "", "pods"),
                    ("create", "", "persistentvolumeclaims"),
                    ("patch", "", "persistentvolumeclaims"),
                    ("patch", "apps", "statefulsets/status"),
                    ("create", "apps", "controllerrevisions"),
                ],
            ),
            ("disruption-controller", &[("update", "policy", "poddisruptionbudgets/status")]),
            (
                "persistent-volume-binder",
                &[
                    ("patch", "", "persistentvolumes"),
                    ("patch", "", "persistentvolumes/status"),
                    ("patch", "", "persistentvolumeclaims"),
                    ("patch", "", "persistentvolumeclaims/status"),
                ],
            ),
            ("resourcequota-controller", &[("update", "", "resourcequotas/status")]),
            (
                "cronjob-controller",
                &[("create", "batch", "jobs"), ("delete", "batch", "jobs"), ("update", "batch", "cronjobs/status")],
            ),
            ("ttl-after-finished-controller", &[("delete", "batch", "jobs")]),
            (
                "horizontal-pod-autoscaler",
                &[
                    ("get", "apps", "deployments/scale"),
                    ("patch", "apps", "deployments/scale"),
                    ("list", "metrics.k8s.io", "pods"),
                    ("update", "autoscaling", "horizontalpodautoscalers/status"),
                ],
            ),
            (
                "namespace-controller",
                &[
                    ("deletecollection", "apps", "deployments"),
                    ("list", "", "secrets"),
                    ("update", "", "namespaces/finalize"),
                ],
            ),
            ("service-account-controller", &[("create", "", "serviceaccounts")]),
            (
                "generic-garbage-collector",
                &[("delete", "apps", "replicasets"), ("patch", "", "pods"), ("get", "batch", "jobs")],
            ),
            (
                "endpoint-controller",
                &[("create", "", "endpoints"), ("update", "", "endpoints"), ("delete", "", "endpoints")],
            ),
            (
                "endpointslice-controller",
                &[
                    ("create", "discovery.k8s.io", "endpointslices"),
                    ("update", "discovery.k8s.io", "endpointslices"),
                    ("delete", "discovery.k8s.io", "endpointslices"),
                ],
            ),
            (
                "node-controller",
                &[
                    ("patch", "", "nodes"),
                    ("patch", "", "nodes/status"),
                    ("patch", "", "pods/status"),
                    ("delete", "", "pods"),
                ],
            ),
            ("clusterrole-aggregation-controller", &[("update", "rbac.authorization.k8s.io", "clusterroles")]),
            ("root-ca-cert-publisher", &[("create", "", "configmaps"), ("update", "", "configmaps")]),
        ];
        for (sa, calls) in does {
            let events: &[(&str, &str, &str)] = if WITHOUT_EVENTS.contains(sa) { &[] } else { &every_recorder };
            for (verb, group, resource) in calls.iter().chain(events) {
                assert!(may(sa, verb, group, resource), "{sa} may not {verb} {group}/{resource}");
            }
        }
        assert_eq!(does.len(), controllers().len(), "every controller role is checked");
        // Each only its own: no controller reads Secrets through the API, nor makes Pods unless
        // it runs them, nor writes RBAC.
        assert!(!may("deployment-controller", "create", "", "pods"));
        assert!(!may("deployment-controller", "get", "", "secrets"));
        assert!(!may("endpoint-controller", "create", "discovery.k8s.io", "endpointslices"));
        assert!(!may("root-ca-cert-publisher", "delete", "", "configmaps"));
        assert!(!may("job-controller", "create", "rbac.authorization.k8s.io", "clusterrolebindings"));
        assert!(!may("namespace-controller", "create", "", "pods"));
        assert!(!may("service-account-controller", "create", "", "serviceaccounts/token"));
        assert!(!may("generic-garbage-collector", "create", "", "pods"));
        // The ServiceAccount of another namespace with the same name gets nothing.
        let other =
            crate::authn::UserInfo::new("system:serviceaccount:team:deployment-controller", &["system:authenticated"]);
        assert!(!rbac.authorize(&Attributes::resource(&other, "create", "apps", "replicasets", "team", "x")).allowed());
    }
}
