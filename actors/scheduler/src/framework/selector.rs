//! Label selectors, node selector terms and pod affinity terms with upstream's matching rules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use kubus_apimachinery::selector::LabelSelector;

use super::{NodeInfo, PodInfo};

// Node selector terms and required node affinity are matched by the same code in the
// DaemonSet controller: they live in apimachinery.
pub use kubus_apimachinery::selector::node::{NodeFacts, NodeSelectorTerm, RequiredNodeAffinity};

impl NodeFacts for NodeInfo {
    fn name(&self) -> &str {
        NodeInfo::name(self)
    }
    fn label(&self, key: &str) -> Option<&str> {
        NodeInfo::label(self, key)
    }
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The scheduler's reading of a `metav1.LabelSelector`: a missing (null) selector matches
/// nothing and an empty one everything, as `LabelSelectorAsSelector` makes them; one that does
/// not convert (an invalid operator) matches nothing, since upstream rejects it.
pub fn label_selector(selector: Option<&metav1::LabelSelector>) -> LabelSelector {
    LabelSelector::from_typed(selector).unwrap_or_else(|_| LabelSelector::nothing())
}

/// A pod (anti-)affinity term with namespaces resolved: an empty namespaces list and no
/// namespaceSelector mean the owning pod's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityTerm {
    pub namespaces: Vec<String>,
    pub namespace_selector: LabelSelector,
    pub selector: LabelSelector,
    pub topology_key: String,
}

impl AffinityTerm {
    pub fn from_typed(term: &api::PodAffinityTerm, owner_namespace: &str) -> Self {
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        let ns_sel = term.namespace_selector.as_ref();
        if namespaces.is_empty() && ns_sel.is_none() {
            namespaces.push(owner_namespace.to_string());
        }
        AffinityTerm {
            namespaces,
            namespace_selector: label_selector(ns_sel),
            selector: label_selector(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` is selected by this term; `ns_labels` are the labels of the pod's
    /// namespace (only consulted for a namespaceSelector).
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&BTreeMap<String, String>>) -> bool {
        self.matches_in(pod.namespace(), pod.labels(), ns_labels)
    }

    /// As [`AffinityTerm::matches`] for a pod known by its namespace and labels (a
    /// [`PodGroup`](super::PodGroup)'s).
    pub fn matches_in(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        ns_labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let ns_ok = self.namespaces.iter().any(|n| n == namespace)
            || self.namespace_selector.matches_labels(ns_labels.unwrap_or(&NO_LABELS));
        ns_ok && self.selector.matches_labels(labels)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedAffinityTerm {
    pub weight: i64,
    pub term: AffinityTerm,
}

impl WeightedAffinityTerm {
    pub fn from_typed(term: &api::WeightedPodAffinityTerm, owner_namespace: &str) -> Self {
        WeightedAffinityTerm {
            weight: i64::from(term.weight),
            term: AffinityTerm::from_typed(&term.pod_affinity_term, owner_namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::typed;
    use serde_json::{json, Value};

    fn labels(v: Value) -> BTreeMap<String, String> {
        typed(v)
    }

    fn selector(v: Value) -> LabelSelector {
        label_selector(Some(&typed(v)))
    }

    #[test]
    fn null_selector_matches_nothing_empty_matches_everything() {
        let l = labels(json!({"app": "web"}));
        assert!(!label_selector(None).matches_labels(&l));
        assert!(selector(json!({})).matches_labels(&l));
        assert!(selector(json!({})).matches_labels(&BTreeMap::new()));
    }

    #[test]
    fn selector_operators() {
        let l = labels(json!({"app": "web", "tier": "fe"}));
        let sel = |v: Value| selector(v).matches_labels(&l);
        assert!(sel(json!({"matchLabels": {"app": "web"}})));
        assert!(!sel(json!({"matchLabels": {"app": "db"}})));
        assert!(sel(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]})));
        assert!(sel(json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})));
        assert!(sel(json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]})));
        assert!(!sel(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})));
        assert!(!sel(json!({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]})));
    }

    #[test]
    fn affinity_term_namespaces_default_to_the_owner() {
        let term: api::PodAffinityTerm =
            typed(json!({"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}));
        let t = AffinityTerm::from_typed(&term, "prod");
        assert_eq!(
            (t.namespaces.as_slice(), t.namespace_selector.matches_nothing()),
            (&["prod".to_string()][..], true)
        );
        let term: api::PodAffinityTerm = typed(json!({"namespaceSelector": {}, "topologyKey": "zone"}));
        let t = AffinityTerm::from_typed(&term, "prod");
        // No label selector selects no pod; an empty namespace selector every namespace.
        assert!(t.namespaces.is_empty() && t.namespace_selector.is_empty() && t.selector.matches_nothing());
    }
}
