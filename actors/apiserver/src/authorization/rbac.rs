//! The RBAC authorizer (rbac.authorization.k8s.io/v1), as upstream's: a request is allowed
//! when a rule of a role bound to the user covers it. ClusterRoleBindings grant their
//! ClusterRole everywhere; a RoleBinding grants its Role, or the ClusterRole it names, in its
//! own namespace only. Pure: roles and bindings come from a [`RoleSource`] (the API server's
//! watch cache, or a fixed set in tests). The watch cache files bindings by subject
//! ([`SUBJECT_INDEX`]), so a check reads only the bindings naming the user, its groups or its
//! ServiceAccount, not every binding of the cluster.

use super::{Attributes, Authorizer, Decision};
use crate::authn::{UserInfo, SERVICE_ACCOUNT_PREFIX};
use serde_json::Value;
use std::sync::Arc;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Where roles and bindings are read from.
pub trait RoleSource: Send + Sync {
    /// A ClusterRole's rules, read once per version of the role (a check reads them for every
    /// binding that may apply, on every request).
    fn cluster_role(&self, name: &str) -> Option<Arc<[PolicyRule]>>;
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<[PolicyRule]>>;
    /// The ClusterRoleBindings that may name the user (at least every one that does; each is
    /// still matched subject by subject).
    fn cluster_role_bindings(&self, user: &UserInfo) -> Vec<Arc<Value>>;
    /// The same for the RoleBindings of a namespace.
    fn role_bindings(&self, namespace: &str, user: &UserInfo) -> Vec<Arc<Value>>;
}

/// The watch cache's index of bindings by subject.
pub const SUBJECT_INDEX: &str = "subject";

/// The values a binding is filed under: `<binding namespace>/<kind>:<subject>` per subject,
/// a ServiceAccount as `ServiceAccount:<namespace>:<name>` (its namespace defaulting to the
/// binding's, as [`applies_to`] reads it).
pub fn binding_subject_index(binding: &Value) -> Vec<String> {
    let ns = binding["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut out: Vec<String> = subjects(binding)
        .filter_map(|s| {
            let name = s["name"].as_str()?;
            Some(match s["kind"].as_str()? {
                "ServiceAccount" => {
                    let sa_ns = s["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(ns);
                    format!("{ns}/ServiceAccount:{sa_ns}:{name}")
                }
                kind => format!("{ns}/{kind}:{name}"),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The index values under which the bindings of `namespace` ("" for ClusterRoleBindings)
/// that name the user are filed.
pub fn user_subject_index(user: &UserInfo, namespace: &str) -> Vec<String> {
    let mut out = vec![format!("{namespace}/User:{}", user.name)];
    out.extend(user.groups.iter().map(|g| format!("{namespace}/Group:{g}")));
    if let Some((sa_ns, name)) = user.name.strip_prefix(SERVICE_ACCOUNT_PREFIX).and_then(|r| r.split_once(':')) {
        out.push(format!("{namespace}/ServiceAccount:{sa_ns}:{name}"));
    }
    out
}

/// Files the watch cache's bindings by subject (see [`binding_subject_index`]).
pub fn index_bindings(cache: &crate::cache::WatchCache) {
    for resource in ["clusterrolebindings", "rolebindings"] {
        cache.add_index(&(GROUP.into(), resource.into()), SUBJECT_INDEX, binding_subject_index);
    }
}

/// One rule of a role (rbac/v1 PolicyRule), read from JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The rules of a Role or ClusterRole.
pub fn rules_of_role(role: &Value) -> Arc<[PolicyRule]> {
    role["rules"].as_array().map(|rs| rs.iter().map(PolicyRule::from_json).collect()).unwrap_or_default()
}

impl PolicyRule {
    pub fn from_json(v: &Value) -> PolicyRule {
        PolicyRule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({"verbs": self.verbs});
        for (k, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() {
                v[k] = serde_json::json!(list);
            }
        }
        v
    }

    /// Whether this rule allows the request (upstream's RuleAllows).
    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verb_matches(&a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.non_resource_url_matches(&a.path);
        }
        self.api_group_matches(&a.api_group)
            && self.resource_matches(&a.resource, &a.subresource)
            && self.resource_name_matches(&a.name)
    }

    pub fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }
    pub fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == "*" || g == group)
    }
    /// `pods`, `pods/log`, `*`, and `*/log` (any resource's log subresource).
    pub fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        // `r == resource + "/" + subresource`, without building the string on every check.
        let combined = |r: &str| match subresource {
            "" => r == resource,
            sub => r.strip_prefix(resource).and_then(|rest| rest.strip_prefix('/')) == Some(sub),
        };
        self.resources
            .iter()
            .any(|r| r == "*" || combined(r) || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource)))
    }
    pub fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }
    /// `*`, an exact path, or a prefix ending in `*`.
    pub fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls
            .iter()
            .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix)))
    }
}

/// Upstream's subject match: a User by name, a Group by membership, a ServiceAccount by its
/// user name (its namespace defaults to the binding's).
pub fn applies_to(subject: &Value, user: &UserInfo, binding_namespace: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => user.name == name,
        Some("Group") => user.in_group(name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
            user.name.strip_prefix(SERVICE_ACCOUNT_PREFIX).and_then(|rest| rest.split_once(':')) == Some((ns, name))
        }
        _ => false,
    }
}

impl<T: RoleSource> RoleSource for Arc<T> {
    fn cluster_role(&self, name: &str) -> Option<Arc<[PolicyRule]>> {
        (**self).cluster_role(name)
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<[PolicyRule]>> {
        (**self).role(namespace, name)
    }
    fn cluster_role_bindings(&self, user: &UserInfo) -> Vec<Arc<Value>> {
        (**self).cluster_role_bindings(user)
    }
    fn role_bindings(&self, namespace: &str, user: &UserInfo) -> Vec<Arc<Value>> {
        (**self).role_bindings(namespace, user)
    }
}

pub struct Rbac<S> {
    pub source: S,
}

impl<S: RoleSource> Rbac<S> {
    /// The rules of the role a binding refers to (None: the role does not exist).
    fn rules_of(&self, binding: &Value, namespace: &str) -> Option<Arc<[PolicyRule]>> {
        let role_ref = &binding["roleRef"];
        let name = role_ref["name"].as_str().unwrap_or_default();
        match role_ref["kind"].as_str() {
            Some("ClusterRole") => self.source.cluster_role(name),
            Some("Role") if !namespace.is_empty() => self.source.role(namespace, name),
            _ => None,
        }
    }

    /// Calls `visit` with every rule the user holds in `namespace` (cluster-wide rules too;
    /// "" for cluster scope) until it returns false (upstream's VisitRulesFor).
    pub fn visit_rules(&self, user: &UserInfo, namespace: &str, visit: &mut dyn FnMut(&PolicyRule) -> bool) {
        for b in self.source.cluster_role_bindings(user) {
            if !subjects(&b).any(|s| applies_to(s, user, "")) {
                continue;
            }
            for r in self.rules_of(&b, "").iter().flat_map(|rs| rs.iter()) {
                if !visit(r) {
                    return;
                }
            }
        }
        if namespace.is_empty() {
            return;
        }
        for b in self.source.role_bindings(namespace, user) {
            if !subjects(&b).any(|s| applies_to(s, user, namespace)) {
                continue;
            }
            for r in self.rules_of(&b, namespace).iter().flat_map(|rs| rs.iter()) {
                if !visit(r) {
                    return;
                }
            }
        }
    }

    /// Every rule the user holds in `namespace`.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        self.visit_rules(user, namespace, &mut |r| {
            out.push(r.clone());
            true
        });
        out
    }
}

fn subjects(binding: &Value) -> impl Iterator<Item = &Value> {
    binding["subjects"].as_array().into_iter().flatten()
}

impl<S: RoleSource> Authorizer for Rbac<S> {
    fn authorize(&self, a: &Attributes) -> Decision {
        let mut allowed = false;
        self.visit_rules(&a.user, &a.namespace, &mut |r| {
            allowed = r.allows(a);
            !allowed
        });
        if allowed {
            Decision::Allow("RBAC: allowed".into())
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

/// The watch cache as a [`RoleSource`]: reads are in-memory lookups of the cached objects,
/// bindings through the subject index ([`index_bindings`]).
impl RoleSource for crate::cache::WatchCache {
    // Roles and bindings are read on every request: kept decoded with the cached objects.
    fn cluster_role(&self, name: &str) -> Option<Arc<[PolicyRule]>> {
        let role = self.get(&(GROUP.into(), "clusterroles".into()), &(String::new(), name.into()))?;
        Some(role.derived(|r| rules_of_role(&r)))
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<[PolicyRule]>> {
        let role = self.get(&(GROUP.into(), "roles".into()), &(namespace.into(), name.into()))?;
        Some(role.derived(|r| rules_of_role(&r)))
    }
    fn cluster_role_bindings(&self, user: &UserInfo) -> Vec<Arc<Value>> {
        let gr = (GROUP.into(), "clusterrolebindings".into());
        self.by_index(&gr, SUBJECT_INDEX, &user_subject_index(user, "")).iter().map(|b| b.shared()).collect()
    }
    fn role_bindings(&self, namespace: &str, user: &UserInfo) -> Vec<Arc<Value>> {
        let gr = (GROUP.into(), "rolebindings".into());
        self.by_index(&gr, SUBJECT_INDEX, &user_subject_index(user, namespace)).iter().map(|b| b.shared()).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// A fixed set of roles and bindings.
    #[derive(Default)]
    pub(crate) struct Fixed {
        pub objects: BTreeMap<(String, String, String), Arc<Value>>,
    }

    impl Fixed {
        pub(crate) fn add(&mut self, resource: &str, obj: Value) -> &mut Self {
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            self.objects.insert((resource.into(), ns, name), Arc::new(obj));
            self
        }
        pub(crate) fn cluster_role_of(&self, name: &str) -> Vec<PolicyRule> {
            self.cluster_role(name).expect("role exists").to_vec()
        }
        fn of(&self, resource: &str, ns: &str) -> Vec<Arc<Value>> {
            self.objects.iter().filter(|((r, n, _), _)| r == resource && n == ns).map(|(_, v)| v.clone()).collect()
        }
    }

    impl RoleSource for Fixed {
        fn cluster_role(&self, name: &str) -> Option<Arc<[PolicyRule]>> {
            self.objects.get(&("clusterroles".into(), String::new(), name.into())).map(|r| rules_of_role(r))
        }
        fn role(&self, namespace: &str, name: &str) -> Option<Arc<[PolicyRule]>> {
            self.objects.get(&("roles".into(), namespace.into(), name.into())).map(|r| rules_of_role(r))
        }
        fn cluster_role_bindings(&self, _: &UserInfo) -> Vec<Arc<Value>> {
            self.of("clusterrolebindings", "")
        }
        fn role_bindings(&self, namespace: &str, _: &UserInfo) -> Vec<Arc<Value>> {
            self.of("rolebindings", namespace)
        }
    }

    pub(crate) fn fixture() -> Fixed {
        let mut f = Fixed::default();
        f.add("roles", json!({"metadata": {"name": "pod-reader", "namespace": "team-a"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}))
            .add("roles", json!({"metadata": {"name": "one-cm", "namespace": "team-a"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get", "update"]}]}))
            .add("clusterroles", json!({"metadata": {"name": "deploy-admin"},
                "rules": [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]},
                          {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"]}]}))
            .add("clusterroles", json!({"metadata": {"name": "health"},
                "rules": [{"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]}]}))
            .add("rolebindings", json!({"metadata": {"name": "alice-reads", "namespace": "team-a"},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "alice"},
                             {"kind": "ServiceAccount", "name": "builder"}]}))
            .add("rolebindings", json!({"metadata": {"name": "devs-cm", "namespace": "team-a"},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "one-cm"},
                "subjects": [{"kind": "Group", "apiGroup": GROUP, "name": "devs"}]}))
            .add("rolebindings", json!({"metadata": {"name": "bob-deploys", "namespace": "team-b"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "deploy-admin"},
                "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "bob"}]}))
            .add("clusterrolebindings", json!({"metadata": {"name": "health"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "health"},
                "subjects": [{"kind": "Group", "apiGroup": GROUP, "name": "system:authenticated"},
                             {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]}));
        f
    }

    /// A watch cache holding `objects` (resource, object), bindings indexed by subject.
    pub(crate) fn cache_of(objects: impl IntoIterator<Item = (String, Arc<Value>)>) -> crate::cache::WatchCache {
        let cache = crate::cache::WatchCache::new(100);
        index_bindings(&cache);
        let objects = objects
            .into_iter()
            .enumerate()
            .map(|(i, (resource, v))| {
                let ns = v["metadata"]["namespace"].as_str().filter(|n| !n.is_empty());
                kubus_bus::Object {
                    key: kubus_bus::Key::new(GROUP, &resource, ns, v["metadata"]["name"].as_str().unwrap_or_default()),
                    revision: i as u64 + 1,
                    value: serde_json::to_vec(&*v).unwrap().into(),
                }
            })
            .collect::<Vec<_>>();
        let revision = objects.len() as u64;
        cache.replace(objects, Vec::new(), revision);
        cache
    }

    #[test]
    fn rules_against_requests() {
        rules_against_requests_from(fixture());
        // The watch cache finds the same bindings through its subject index.
        let f = fixture();
        rules_against_requests_from(cache_of(f.objects.into_iter().map(|((r, _, _), v)| (r, v))));
    }

    #[test]
    fn bindings_filed_by_subject() {
        let b = json!({"metadata": {"name": "b", "namespace": "team-a"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                         {"kind": "ServiceAccount", "name": "builder"},
                         {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]});
        assert_eq!(
            binding_subject_index(&b),
            [
                "team-a/Group:devs",
                "team-a/ServiceAccount:team-a:builder",
                "team-a/ServiceAccount:tools:ci",
                "team-a/User:alice"
            ]
        );
        let sa = UserInfo::new("system:serviceaccount:tools:ci", &["system:serviceaccounts"]);
        assert_eq!(
            user_subject_index(&sa, ""),
            ["/User:system:serviceaccount:tools:ci", "/Group:system:serviceaccounts", "/ServiceAccount:tools:ci"]
        );
    }

    /// The old way, for the comparison below: every ClusterRoleBinding and every RoleBinding
    /// of the namespace, matched subject by subject.
    struct Scan(crate::cache::WatchCache);

    impl RoleSource for Scan {
        fn cluster_role(&self, name: &str) -> Option<Arc<[PolicyRule]>> {
            self.0.cluster_role(name)
        }
        fn role(&self, namespace: &str, name: &str) -> Option<Arc<[PolicyRule]>> {
            self.0.role(namespace, name)
        }
        fn cluster_role_bindings(&self, _: &UserInfo) -> Vec<Arc<Value>> {
            self.0.list(&(GROUP.into(), "clusterrolebindings".into()), None).0.iter().map(|b| b.shared()).collect()
        }
        fn role_bindings(&self, namespace: &str, _: &UserInfo) -> Vec<Arc<Value>> {
            self.0.list(&(GROUP.into(), "rolebindings".into()), Some(namespace)).0.iter().map(|b| b.shared()).collect()
        }
    }

    /// A check's cost with many bindings, by scan and by subject index (printed, not
    /// asserted: figures come from runs recorded in docs/benchmarks.md). Run with
    /// `cargo nextest run -p kubus-apiserver binding_lookup_cost --no-capture`.
    #[test]
    fn binding_lookup_cost_with_many_bindings() {
        const NAMESPACES: usize = 10;
        const BINDINGS: usize = 10_000;
        let mut objects: Vec<(String, Arc<Value>)> = Vec::new();
        let mut roles = super::super::bootstrap::cluster_roles();
        kubus_apimachinery::rbac::aggregate_all(&mut roles);
        for r in roles {
            objects.push(("clusterroles".into(), Arc::new(r)));
        }
        for b in super::super::bootstrap::cluster_role_bindings() {
            objects.push(("clusterrolebindings".into(), Arc::new(b)));
        }
        for i in 0..BINDINGS {
            objects.push((
                "rolebindings".into(),
                Arc::new(
                    json!({"metadata": {"name": format!("rb-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)},
                    "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "User", "apiGroup": GROUP, "name": format!("user-{i}")}]}),
                ),
            ));
        }
        let cache = cache_of(objects);
        let (indexed, scan) = (Rbac { source: cache.clone() }, Rbac { source: Scan(cache) });
        // Users with a binding (allowed) and without (denied: every binding is looked at).
        let checks: Vec<Attributes> = (0..1000)
            .map(|i| {
                let user = UserInfo::new(&format!("user-{}", i * 13 % (BINDINGS + 1000)), &["system:authenticated"]);
                Attributes::resource(&user, "list", "", "pods", &format!("ns-{}", i % NAMESPACES), "")
            })
            .collect();
        let time = |rbac: &dyn Authorizer| {
            let start = std::time::Instant::now();
            let allowed = checks.iter().filter(|a| rbac.authorize(a).allowed()).count();
            (start.elapsed() / checks.len() as u32, allowed)
        };
        let (mut by_scan, mut by_index) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            by_scan.push(time(&scan));
            by_index.push(time(&indexed));
        }
        // Same decisions either way.
        assert!(by_scan.iter().chain(&by_index).all(|(_, n)| *n == by_scan[0].1));
        assert!(by_scan[0].1 > 0 && by_scan[0].1 < checks.len());
        let median = |v: &mut Vec<(std::time::Duration, usize)>| {
            v.sort();
            v[1].0
        };
        let (s, x) = (median(&mut by_scan), median(&mut by_index));
        println!(
            "RBAC check, {BINDINGS} RoleBindings in {NAMESPACES} namespaces: scan {s:?}, subject index {x:?} ({:.0}x)",
            s.as_secs_f64() / x.as_secs_f64().max(1e-9)
        );
    }

    fn rules_against_requests_from(source: impl RoleSource) {
        let rbac = Rbac { source };
        let alice = UserInfo::new("alice", &["system:authenticated"]);
        let bob = UserInfo::new("bob", &["system:authenticated"]);
        let carol = UserInfo::new("carol", &["devs"]);
        let builder = UserInfo::new("system:serviceaccount:team-a:builder", &[]);
        let other_builder = UserInfo::new("system:serviceaccount:team-b:builder", &[]);
        let ci = UserInfo::new("system:serviceaccount:tools:ci", &[]);
        let r = |u: &UserInfo, verb: &str, group: &str, res: &str, ns: &str, name: &str| {
            rbac.authorize(&Attributes::resource(u, verb, group, res, ns, name)).allowed()
        };
        let url =
            |u: &UserInfo, verb: &str, path: &str| rbac.authorize(&Attributes::non_resource(u, verb, path)).allowed();
        let cases: &[(bool, bool)] = &[
            (r(&alice, "list", "", "pods", "team-a", ""), true),
            (r(&alice, "get", "", "pods", "team-a", "web"), true),
            (r(&alice, "get", "", "pods/log", "team-a", "web"), true),
            (r(&alice, "get", "", "pods/exec", "team-a", "web"), false),
            (r(&alice, "watch", "", "pods", "team-a", ""), false),
            (r(&alice, "list", "", "pods", "default", ""), false),
            (r(&alice, "list", "", "pods", "", ""), false),
            (r(&alice, "list", "apps", "pods", "team-a", ""), false),
            // ServiceAccount subjects default to the binding's namespace.
            (r(&builder, "list", "", "pods", "team-a", ""), true),
            (r(&other_builder, "list", "", "pods", "team-a", ""), false),
            // resourceNames narrow a rule to named objects.
            (r(&carol, "get", "", "configmaps", "team-a", "settings"), true),
            (r(&carol, "get", "", "configmaps", "team-a", "other"), false),
            (r(&carol, "list", "", "configmaps", "team-a", ""), false),
            // A ClusterRole bound by a RoleBinding applies in that namespace only.
            (r(&bob, "delete", "apps", "deployments", "team-b", "d"), true),
            (r(&bob, "delete", "apps", "deployments", "team-a", "d"), false),
            (r(&bob, "get", "", "replicationcontrollers/scale", "team-b", "rc"), true),
            (r(&bob, "update", "", "replicationcontrollers/scale", "team-b", "rc"), false),
            // Non-resource URLs: exact and trailing-* prefixes.
            (url(&alice, "get", "/healthz"), true),
            (url(&alice, "get", "/apis/apps/v1"), true),
            (url(&alice, "get", "/api/v1"), false),
            (url(&alice, "post", "/healthz"), false),
            (url(&ci, "get", "/healthz"), true),
            (url(&builder, "get", "/healthz"), false),
        ];
        for (i, (got, want)) in cases.iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn privileged_group_first_then_rbac() {
        let chain =
            super::super::Union(vec![Box::new(super::super::PrivilegedGroup), Box::new(Rbac { source: fixture() })]);
        let admin = crate::authn::cluster_admin();
        assert!(chain.authorize(&Attributes::resource(&admin, "delete", "", "nodes", "", "n")).allowed());
        let alice = UserInfo::new("alice", &[]);
        assert!(!chain.authorize(&Attributes::resource(&alice, "delete", "", "nodes", "", "n")).allowed());
    }
}
