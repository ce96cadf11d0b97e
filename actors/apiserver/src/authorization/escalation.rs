//! Escalation prevention, as upstream's RBAC registry: a user may write a Role or ClusterRole
//! only with every permission it grants (or the `escalate` verb on it), and a binding only
//! with every permission of the role it refers to (or the `bind` verb on that role).
//! `system:masters` may do both.

use super::rbac::{PolicyRule, Rbac, RoleSource, GROUP};
use super::{Attributes, Authorizer};
use crate::authn::{UserInfo, SYSTEM_PRIVILEGED_GROUP};
use kubus_apimachinery::StatusError;
use serde_json::Value;

/// Whether `new` differs from `old` only in what the garbage collector writes (owner
/// references and finalizers) and what the store stamps (upstream's IsOnlyMutatingGCFields).
pub fn only_gc_fields_change(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in ["ownerReferences", "finalizers", "resourceVersion", "managedFields", "generation"] {
                meta.remove(field);
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// Checks a write of an RBAC object by `user` (create or update; `obj` is what is stored).
pub fn check<S: RoleSource + Clone + 'static>(
    source: &S,
    user: &UserInfo,
    resource: &str,
    obj: &Value,
) -> Result<(), StatusError> {
    if user.in_group(SYSTEM_PRIVILEGED_GROUP) {
        return Ok(());
    }
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let chain = super::chain(source.clone());
    let rbac = Rbac { source: source.clone() };
    let refuse = |msg: String| Err(StatusError::forbidden(GROUP, resource, name, msg));
    match resource {
        "roles" | "clusterroles" => {
            let may_escalate =
                chain.authorize(&Attributes::resource(user, "escalate", GROUP, resource, namespace, name)).allowed();
            if may_escalate {
                return Ok(());
            }
            if resource == "clusterroles" && !obj["aggregationRule"].is_null() {
                return refuse("must have cluster-admin privileges to use the aggregationRule".into());
            }
            let rules: Vec<PolicyRule> =
                obj["rules"].as_array().into_iter().flatten().map(PolicyRule::from_json).collect();
            confirm_no_escalation(&rbac, user, namespace, &rules).or_else(refuse)
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = &obj["roleRef"];
            let role_name = role_ref["name"].as_str().unwrap_or_default();
            let role_resource = if role_ref["kind"].as_str() == Some("Role") { "roles" } else { "clusterroles" };
            let may_bind = chain
                .authorize(&Attributes::resource(user, "bind", GROUP, role_resource, namespace, role_name))
                .allowed();
            if may_bind {
                return Ok(());
            }
            let role = match role_resource {
                "roles" => source.role(namespace, role_name),
                _ => source.cluster_role(role_name),
            };
            let Some(role) = role else {
                return refuse(format!("{role_resource}.{GROUP} {role_name:?} not found"));
            };
            confirm_no_escalation(&rbac, user, namespace, &role).or_else(refuse)
        }
        _ => Ok(()),
    }
}

/// Upstream's ConfirmNoEscalation: the user's rules in `namespace` must cover `rules`.
pub fn confirm_no_escalation<S: RoleSource>(
    rbac: &Rbac<S>,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let owner = rbac.rules_for(user, namespace);
    let missing = uncovered(&owner, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing.iter().map(compact).collect();
    Err(format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted(&user.groups),
        lines.join("\n")
    ))
}

/// The atoms of `requested` (one verb, group, resource and name, or one verb and URL) that no
/// rule of `owner` covers (upstream's Covers).
pub fn uncovered(owner: &[PolicyRule], requested: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut missing = Vec::new();
    for atom in requested.iter().flat_map(breakdown) {
        if !owner.iter().any(|o| covers(o, &atom)) && !missing.contains(&atom) {
            missing.push(atom);
        }
    }
    missing
}

fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| vec![s.clone()];
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                if rule.resource_names.is_empty() {
                    out.push(PolicyRule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        ..Default::default()
                    });
                }
                for name in &rule.resource_names {
                    out.push(PolicyRule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        resource_names: one(name),
                        ..Default::default()
                    });
                }
            }
        }
        for url in &rule.non_resource_urls {
            out.push(PolicyRule { verbs: one(verb), non_resource_urls: one(url), ..Default::default() });
        }
    }
    out
}

/// Whether `owner` covers the atomic rule `atom`.
fn covers(owner: &PolicyRule, atom: &PolicyRule) -> bool {
    let has = |set: &[String], v: &str| set.iter().any(|s| s == "*" || s == v);
    let verb = &atom.verbs[0];
    if !has(&owner.verbs, verb) {
        return false;
    }
    if let Some(url) = atom.non_resource_urls.first() {
        return owner
            .non_resource_urls
            .iter()
            .any(|o| o == url || o.strip_suffix('*').is_some_and(|prefix| url.starts_with(prefix)));
    }
    let (group, resource) = (&atom.api_groups[0], &atom.resources[0]);
    if !has(&owner.api_groups, group) {
        return false;
    }
    let resource_ok = has(&owner.resources, resource)
        || resource
            .split_once('/')
            .is_some_and(|(r, sub)| owner.resources.iter().any(|o| *o == format!("*/{sub}") || *o == format!("{r}/*")));
    if !resource_ok {
        return false;
    }
    owner.resource_names.is_empty() || atom.resource_names.first().is_some_and(|n| owner.resource_names.contains(n))
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    format!("[{}]", list.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "))
}

/// Upstream's PolicyRule.CompactString.
fn compact(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("APIGroups", &r.api_groups),
        ("Resources", &r.resources),
        ("NonResourceURLs", &r.non_resource_urls),
        ("ResourceNames", &r.resource_names),
        ("Verbs", &r.verbs),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k}:{}", go_quoted(v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod gc_fields {
    use super::only_gc_fields_change;
    use serde_json::json;

    #[test]
    fn owners_and_finalizers_are_the_garbage_collectors_only() {
        let old = json!({"metadata": {"name": "r", "resourceVersion": "1", "finalizers": ["foregroundDeletion"]},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        let mut gc = old.clone();
        gc["metadata"]["finalizers"] = json!([]);
        gc["metadata"]["ownerReferences"] = json!([{"kind": "X", "name": "x", "uid": "u"}]);
        gc["metadata"]["resourceVersion"] = json!("2");
        assert!(only_gc_fields_change(&old, &gc));
        let mut grant = gc.clone();
        grant["rules"][0]["verbs"] = json!(["*"]);
        assert!(!only_gc_fields_change(&old, &grant));
        let mut labels = gc;
        labels["metadata"]["labels"] = json!({"a": "b"});
        assert!(!only_gc_fields_change(&old, &labels));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorization::rbac::tests::fixture;
    use serde_json::json;

    fn rule(v: Value) -> PolicyRule {
        PolicyRule::from_json(&v)
    }

    #[test]
    fn coverage() {
        let owner = vec![
            rule(json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get", "list"]})),
            rule(json!({"apiGroups": ["apps"], "resources": ["deployments/*"], "verbs": ["*"]})),
            rule(json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]})),
            rule(json!({"nonResourceURLs": ["/logs/*"], "verbs": ["get"]})),
        ];
        let ok = [
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
            json!({"apiGroups": [""], "resources": ["services/status"], "verbs": ["list"]}),
            json!({"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update", "get"]}),
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]}),
            json!({"nonResourceURLs": ["/logs/kubelet"], "verbs": ["get"]}),
        ];
        for r in ok {
            assert!(uncovered(&owner, &[rule(r.clone())]).is_empty(), "{r}");
        }
        let bad = [
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}),
            json!({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}),
            json!({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}),
            json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}),
            json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}),
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["b"], "verbs": ["get"]}),
            json!({"nonResourceURLs": ["/logs"], "verbs": ["get"]}),
        ];
        for r in bad {
            assert_eq!(uncovered(&owner, &[rule(r.clone())]).len(), 1, "{r}");
        }
    }

    #[test]
    fn roles_and_bindings_need_what_they_grant() {
        let source = std::sync::Arc::new(fixture());
        let alice = UserInfo::new("alice", &["system:authenticated"]);
        // alice reads pods in team-a: she may grant that, not more.
        let same = json!({"metadata": {"name": "r", "namespace": "team-a"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]});
        assert!(check(&source, &alice, "roles", &same).is_ok());
        let more = json!({"metadata": {"name": "r", "namespace": "team-a"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]}]});
        let e = check(&source, &alice, "roles", &more).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        );
        let elsewhere = json!({"metadata": {"name": "r", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]});
        assert!(check(&source, &alice, "roles", &elsewhere).is_err());
        // Binding the role she holds is fine; binding bob's deploy-admin is not.
        let bind_reader = json!({"metadata": {"name": "b", "namespace": "team-a"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "pod-reader"}, "subjects": []});
        assert!(check(&source, &alice, "rolebindings", &bind_reader).is_ok());
        let bind_admin = json!({"metadata": {"name": "b", "namespace": "team-a"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "deploy-admin"}, "subjects": []});
        assert!(check(&source, &alice, "rolebindings", &bind_admin).is_err());
        // The masters may do anything.
        assert!(check(&source, &crate::authn::cluster_admin(), "rolebindings", &bind_admin).is_ok());
    }
}
