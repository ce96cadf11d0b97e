//! rbac.authorization.k8s.io/v1 (upstream's ValidateRole, ValidateClusterRole,
//! ValidateRoleBinding, ValidateClusterRoleBinding): names are path segments, each rule names
//! verbs and either resources (with API groups) or non-resource URLs (cluster roles only),
//! bindings refer to a role of the RBAC group and name Users, Groups or ServiceAccounts.

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::names;
use super::util::*;
use crate::status::Cause;

const GROUP: &str = "rbac.authorization.k8s.io";

pub(super) fn validate_role(role: &Value, namespaced: bool) -> Vec<Cause> {
    let scope = if namespaced { Scope::Namespaced } else { Scope::Cluster };
    let mut errs = meta::validate_object_meta(role, scope, NameRule::PathSegment);
    for (i, rule) in get_arr(role, "rules").iter().enumerate() {
        let path = index("rules", i);
        let list = |k: &str| get_arr(rule, k).len();
        if list("verbs") == 0 {
            errs.push(required_detail(&child(&path, "verbs"), "verbs must contain at least one value"));
        }
        let urls = sub(rule, "nonResourceURLs");
        if list("nonResourceURLs") > 0 {
            if namespaced {
                errs.push(Cause::invalid(
                    child(&path, "nonResourceURLs"),
                    urls,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if list("apiGroups") > 0 || list("resources") > 0 || list("resourceNames") > 0 {
                errs.push(Cause::invalid(
                    child(&path, "nonResourceURLs"),
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if list("apiGroups") == 0 {
            errs.push(required_detail(&child(&path, "apiGroups"), "resource rules must supply at least one api group"));
        }
        if list("resources") == 0 {
            errs.push(required_detail(&child(&path, "resources"), "resource rules must supply at least one resource"));
        }
    }
    errs
}

pub(super) fn validate_binding(b: &Value, namespaced: bool) -> Vec<Cause> {
    let scope = if namespaced { Scope::Namespaced } else { Scope::Cluster };
    let mut errs = meta::validate_object_meta(b, scope, NameRule::PathSegment);
    let role_ref = sub(b, "roleRef");
    let group = get_str(role_ref, "apiGroup");
    if group != GROUP {
        errs.push(Cause::not_supported("roleRef.apiGroup", &str_value(group), &[GROUP]));
    }
    let kind = get_str(role_ref, "kind");
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    if !kinds.contains(&kind) {
        errs.push(Cause::not_supported("roleRef.kind", &str_value(kind), kinds));
    }
    let name = get_str(role_ref, "name");
    if name.is_empty() {
        errs.push(Cause::required("roleRef.name"));
    } else {
        for e in names::path_segment_errors(name) {
            errs.push(Cause::invalid("roleRef.name", &str_value(name), e));
        }
    }
    for (i, s) in get_arr(b, "subjects").iter().enumerate() {
        errs.extend(validate_subject(s, namespaced, &index("subjects", i)));
    }
    errs
}

fn validate_subject(s: &Value, namespaced: bool, path: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let name = get_str(s, "name");
    if name.is_empty() {
        errs.push(Cause::required(child(path, "name")));
    }
    let group = get_str(s, "apiGroup");
    match get_str(s, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for e in names::dns1123_subdomain_errors(name) {
                    errs.push(Cause::invalid(child(path, "name"), &str_value(name), e));
                }
            }
            if !group.is_empty() {
                errs.push(Cause::not_supported(child(path, "apiGroup"), &str_value(group), &[""]));
            }
            if !namespaced && get_str(s, "namespace").is_empty() {
                errs.push(Cause::required(child(path, "namespace")));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                errs.push(Cause::not_supported(child(path, "apiGroup"), &str_value(group), &[GROUP]));
            }
        }
        other => errs.push(Cause::not_supported(
            child(path, "kind"),
            &str_value(other),
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errs
}

/// A binding's roleRef never changes (delete and recreate the binding instead).
pub(super) fn role_ref_immutable(new: &Value, old: &Value) -> Vec<Cause> {
    if sub(new, "roleRef") != sub(old, "roleRef") {
        return vec![Cause::invalid("roleRef", sub(new, "roleRef"), "cannot change roleRef")];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(c: &[Cause]) -> Vec<String> {
        c.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn roles_as_upstream() {
        let ok = json!({"metadata": {"name": "pod-reader", "namespace": "a"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        assert!(validate_role(&ok, true).is_empty());
        let bad = json!({"metadata": {"name": "r", "namespace": "a"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": []},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            {"verbs": ["get"]}]});
        let m = messages(&validate_role(&bad, true));
        assert!(
            m.iter().any(|s| s.contains("rules[0].verbs: Required value: verbs must contain at least one value")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|s| s.contains("rules[1].nonResourceURLs: Invalid value")
                && s.contains("namespaced rules cannot apply to non-resource URLs")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|s| s
                    .contains("rules[2].apiGroups: Required value: resource rules must supply at least one api group")),
            "{m:?}"
        );
        let cluster =
            json!({"metadata": {"name": "system:x"}, "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]});
        assert!(validate_role(&cluster, false).is_empty());
    }

    #[test]
    fn bindings_as_upstream() {
        let ok = json!({"metadata": {"name": "b", "namespace": "a"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "alice"}, {"kind": "ServiceAccount", "name": "default"}]});
        assert!(validate_binding(&ok, true).is_empty(), "{:?}", messages(&validate_binding(&ok, true)));
        let m = messages(&validate_binding(&ok, false));
        assert!(m.iter().any(|s| s.starts_with("subjects[1].namespace: Required value")), "{m:?}");
        let bad = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "x", "kind": "Role", "name": ""},
            "subjects": [{"kind": "Robot", "name": "r"}]});
        let m = messages(&validate_binding(&bad, false));
        assert!(m.iter().any(|s| s.starts_with("roleRef.apiGroup: Unsupported value: \"x\"")), "{m:?}");
        assert!(m.iter().any(|s| s.starts_with("roleRef.kind: Unsupported value: \"Role\"")), "{m:?}");
        assert!(m.iter().any(|s| s.starts_with("roleRef.name: Required value")), "{m:?}");
        assert!(m.iter().any(|s| s.starts_with("subjects[0].kind: Unsupported value: \"Robot\"")), "{m:?}");
        let mut changed = ok.clone();
        changed["roleRef"]["name"] = json!("edit");
        assert_eq!(role_ref_immutable(&changed, &ok).len(), 1);
    }
}
