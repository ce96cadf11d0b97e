//! Upstream's audit policy (`audit.k8s.io/v1` `Policy`, the file of `--audit-policy-file`): the
//! first rule that matches a request decides its level; no rule matching means `None`.

use crate::authorization::Attributes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<String>,
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    pub omit_stages: Vec<String>,
    #[serde(default)]
    pub omit_managed_fields: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the audit policy {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the audit policy {path} is not an audit.k8s.io/v1 Policy: {reason}")]
    Invalid { path: String, reason: String },
}

/// Kubus's policy when none is given: every change is recorded; reads, health checks and
/// Leases (heartbeats, leader election) are not. Changes by people and workloads carry their
/// object; those of the nodes and control-plane components (thousands of pods and statuses at
/// scale) and of Secrets, ConfigMaps and tokens are recorded without content. (Upstream records
/// nothing without a policy; secure by default, Kubus records who changed what.)
pub const DEFAULT_POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [get, list, watch]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/version/*", "/metrics"]
- level: Metadata
  userGroups: ["system:nodes"]
- level: Metadata
  users: ["system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy"]
# The controllers, each as its ServiceAccount (controller_roles.rs).
- level: Metadata
  users: ["system:serviceaccount:kube-system:clusterrole-aggregation-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:disruption-controller",
    "system:serviceaccount:kube-system:endpoint-controller",
    "system:serviceaccount:kube-system:endpointslice-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:node-controller",
    "system:serviceaccount:kube-system:persistent-volume-binder",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:replication-controller",
    "system:serviceaccount:kube-system:resourcequota-controller",
    "system:serviceaccount:kube-system:root-ca-cert-publisher",
    "system:serviceaccount:kube-system:service-account-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:ttl-after-finished-controller"]
- level: Metadata
  resources:
  - {group: "", resources: [secrets, configmaps, serviceaccounts/token]}
  - {group: authentication.k8s.io, resources: [tokenreviews, tokenrequests]}
- level: Request
"#;

impl Policy {
    pub fn parse(text: &str, path: &str) -> Result<Policy, PolicyError> {
        let invalid = |reason: String| PolicyError::Invalid { path: path.to_string(), reason };
        let policy: Policy = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if policy.kind != "Policy" || !matches!(policy.api_version.as_str(), "audit.k8s.io/v1") {
            return Err(invalid(format!(
                "kind {:?} and apiVersion {:?} (want Policy, audit.k8s.io/v1)",
                policy.kind, policy.api_version
            )));
        }
        for (i, rule) in policy.rules.iter().enumerate() {
            if !rule.non_resource_urls.is_empty() && (!rule.resources.is_empty() || !rule.namespaces.is_empty()) {
                return Err(invalid(format!("rule {i}: nonResourceURLs cannot go with resources or namespaces")));
            }
        }
        Ok(policy)
    }

    pub fn read(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: shown.clone(), source })?;
        Policy::parse(&text, &shown)
    }

    pub fn default_policy() -> Policy {
        Policy::parse(DEFAULT_POLICY, "the default audit policy").expect("the default audit policy parses")
    }

    /// The level of a request (upstream's policy evaluation: the first matching rule).
    pub fn level(&self, a: &Attributes) -> Level {
        self.rules.iter().find(|r| r.matches(a)).map_or(Level::None, |r| r.level)
    }
}

/// `pattern` against `value`: `*` is any, a trailing `*` a prefix.
fn wild(pattern: &str, value: &str) -> bool {
    pattern == "*" || pattern == value || pattern.strip_suffix('*').is_some_and(|p| value.starts_with(p))
}

impl PolicyRule {
    fn matches(&self, a: &Attributes) -> bool {
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        if !any(&self.users, &a.user.name) {
            return false;
        }
        if !self.user_groups.is_empty() && !self.user_groups.iter().any(|g| a.user.in_group(g)) {
            return false;
        }
        if !any(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            // A rule about resources or namespaces says nothing of non-resource paths.
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            return self.non_resource_urls.is_empty() || self.non_resource_urls.iter().any(|p| wild(p, &a.path));
        }
        if !self.non_resource_urls.is_empty() {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == &a.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let full = match a.subresource.as_str() {
            "" => a.resource.clone(),
            sub => format!("{}/{sub}", a.resource),
        };
        // Upstream's matching: no resources is the whole group; `x/*` is x and its
        // subresources, `*/s` subresource s of anything; names narrow a listed resource.
        self.resources.iter().any(|gr| {
            gr.group == a.api_group
                && (gr.resources.is_empty()
                    || ((gr.resource_names.is_empty() || gr.resource_names.iter().any(|n| n == &a.name))
                        && gr.resources.iter().any(|r| {
                            r == &full
                                || r == "*"
                                || r.strip_suffix("/*").is_some_and(|res| res == a.resource)
                                || (!a.subresource.is_empty()
                                    && r.strip_prefix("*/").is_some_and(|sub| sub == a.subresource))
                        })))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::UserInfo;

    fn attrs(user: UserInfo, verb: &str, group: &str, resource: &str) -> Attributes {
        Attributes::resource(&user, verb, group, resource, "default", "x")
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let p = Policy::default_policy();
        let admin = UserInfo::new("kubernetes-admin", &["system:masters"]);
        let node = UserInfo::new("system:node:n1", &["system:nodes"]);
        assert_eq!(p.level(&attrs(admin.clone(), "create", "apps", "deployments")), Level::Request);
        assert_eq!(p.level(&attrs(admin.clone(), "list", "", "pods")), Level::None);
        assert_eq!(p.level(&attrs(admin.clone(), "create", "", "secrets")), Level::Metadata);
        assert_eq!(p.level(&attrs(admin.clone(), "create", "", "serviceaccounts/token")), Level::Metadata);
        assert_eq!(p.level(&attrs(node.clone(), "patch", "", "pods/status")), Level::Metadata);
        assert_eq!(p.level(&attrs(node, "update", "coordination.k8s.io", "leases")), Level::None);
        let controllers = UserInfo::new("system:kube-controller-manager", &[]);
        assert_eq!(p.level(&attrs(controllers, "create", "", "pods")), Level::Metadata);
        // Each controller as its ServiceAccount, as the controller manager.
        for user in crate::authorization::controller_roles::users() {
            let controller = UserInfo::new(&user, &["system:serviceaccounts", "system:serviceaccounts:kube-system"]);
            assert_eq!(p.level(&attrs(controller, "create", "", "pods")), Level::Metadata, "{user}");
        }
        let workload = UserInfo::new("system:serviceaccount:kube-system:my-operator", &["system:serviceaccounts"]);
        assert_eq!(p.level(&attrs(workload, "create", "", "pods")), Level::Request);
        assert_eq!(p.level(&Attributes::non_resource(&admin, "get", "/healthz/etcd")), Level::None);
        assert_eq!(p.level(&Attributes::non_resource(&admin, "post", "/apis/x")), Level::Request);
    }

    #[test]
    fn policies_are_read_as_upstream_writes_them() {
        let p = Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n  resources:\n  - group: \"\"\n    resources: [\"pods/*\"]\n- level: Metadata\n  namespaces: [kube-system]\n",
            "p",
        )
        .unwrap();
        let admin = UserInfo::new("a", &[]);
        assert_eq!(p.level(&attrs(admin.clone(), "get", "", "pods/log")), Level::RequestResponse);
        assert_eq!(p.level(&attrs(admin.clone(), "get", "", "pods")), Level::RequestResponse, "x/* is x too");
        assert_eq!(p.level(&attrs(admin.clone(), "get", "", "services")), Level::None);
        let ks = Attributes::resource(&admin, "create", "", "configmaps", "kube-system", "c");
        assert_eq!(p.level(&ks), Level::Metadata);
        assert!(Policy::parse("apiVersion: v1\nkind: ConfigMap\n", "p").is_err());
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n", "p").is_err());
    }
}
