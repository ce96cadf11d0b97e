//! ClusterRole aggregation (upstream's clusterrole-aggregation controller's rule): a
//! ClusterRole with an `aggregationRule` holds the rules of every other ClusterRole whose
//! labels match one of its selectors, in name order, each rule once. The API server's
//! bootstrap and the controller manager's aggregation controller both use it.

use crate::selector::LabelSelector;
use serde_json::Value;

/// The rules `role` aggregates from `all` cluster roles; None when it has no aggregation rule.
pub fn aggregated_rules<'a>(role: &Value, all: impl IntoIterator<Item = &'a Value>) -> Option<Vec<Value>> {
    let selectors: Vec<LabelSelector> = role["aggregationRule"]["clusterRoleSelectors"]
        .as_array()?
        .iter()
        .filter_map(|s| LabelSelector::from_json(s).ok())
        .collect();
    let own = role["metadata"]["name"].as_str().unwrap_or_default();
    let mut sources: Vec<&Value> = all
        .into_iter()
        .filter(|r| r["metadata"]["name"].as_str().unwrap_or_default() != own)
        .filter(|r| selectors.iter().any(|s| s.matches_object(r)))
        .collect();
    sources.sort_by_key(|r| r["metadata"]["name"].as_str().unwrap_or_default().to_string());
    let mut rules: Vec<Value> = Vec::new();
    for r in sources.iter().flat_map(|r| r["rules"].as_array().into_iter().flatten()) {
        if !rules.contains(r) {
            rules.push(r.clone());
        }
    }
    Some(rules)
}

/// Aggregates every role of `roles` until nothing changes (an aggregated role may itself be
/// aggregated, as view is into edit and edit into admin); returns the indices of the roles
/// whose rules changed.
pub fn aggregate_all(roles: &mut [Value]) -> Vec<usize> {
    let mut changed = Vec::new();
    for _ in 0..=roles.len() {
        let mut any = false;
        for i in 0..roles.len() {
            let Some(rules) = aggregated_rules(&roles[i], roles.iter()) else { continue };
            if roles[i]["rules"].as_array().map(Vec::as_slice).unwrap_or_default() != rules.as_slice() {
                roles[i]["rules"] = Value::Array(rules);
                any = true;
                if !changed.contains(&i) {
                    changed.push(i);
                }
            }
        }
        if !any {
            break;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aggregates_matching_roles_once() {
        let admin = json!({"metadata": {"name": "admin"}, "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]}});
        let a = json!({"metadata": {"name": "b", "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        let b = json!({"metadata": {"name": "a", "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
                      {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        let other =
            json!({"metadata": {"name": "c"}, "rules": [{"apiGroups": ["x"], "resources": ["y"], "verbs": ["z"]}]});
        let rules = aggregated_rules(&admin, [&a, &b, &other, &admin]).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0]["apiGroups"], json!(["apps"]));
        assert!(aggregated_rules(&other, [&a]).is_none());
    }
}
