//! Label selectors, node selector terms and pod affinity terms with upstream's matching rules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use kubus_apimachinery::pod;
use kubus_apimachinery::selector::LabelSelector;

use super::{NodeInfo, PodInfo};

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The scheduler's reading of a `metav1.LabelSelector`: a missing (null) selector matches
/// nothing and an empty one everything, as `LabelSelectorAsSelector` makes them; one that does
/// not convert (an invalid operator) matches nothing, since upstream rejects it.
pub fn label_selector(selector: Option<&metav1::LabelSelector>) -> LabelSelector {
    LabelSelector::from_typed(selector).unwrap_or_else(|_| LabelSelector::nothing())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeOp {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeRequirement {
    key: String,
    op: NodeOp,
}

impl NodeRequirement {
    fn parse(e: &api::NodeSelectorRequirement) -> Option<Self> {
        let values = e.values.as_deref().unwrap_or(&[]);
        let int = || -> Option<i64> {
            match values {
                [one] => one.parse().ok(),
                _ => None,
            }
        };
        let op = match e.operator.as_str() {
            "In" => NodeOp::In(values.to_vec()),
            "NotIn" => NodeOp::NotIn(values.to_vec()),
            "Exists" => NodeOp::Exists,
            "DoesNotExist" => NodeOp::DoesNotExist,
            "Gt" => NodeOp::Gt(int()?),
            "Lt" => NodeOp::Lt(int()?),
            _ => return None,
        };
        Some(NodeRequirement { key: e.key.clone(), op })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match &self.op {
            NodeOp::In(vals) => value.is_some_and(|v| vals.iter().any(|x| x == v)),
            NodeOp::NotIn(vals) => value.is_none_or(|v| !vals.iter().any(|x| x == v)),
            NodeOp::Exists => value.is_some(),
            NodeOp::DoesNotExist => value.is_none(),
            NodeOp::Gt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            NodeOp::Lt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
        }
    }
}

/// One `nodeSelectorTerm`: its matchExpressions and matchFields are ANDed. An empty or
/// invalid term matches no node, as upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSelectorTerm {
    expressions: Vec<NodeRequirement>,
    fields: Vec<NodeRequirement>,
    valid: bool,
}

impl NodeSelectorTerm {
    pub fn from_typed(term: &api::NodeSelectorTerm) -> Self {
        let mut valid = true;
        let mut parse = |requirements: Option<&Vec<api::NodeSelectorRequirement>>, fields: bool| {
            let mut out = Vec::new();
            for e in requirements.into_iter().flatten() {
                match NodeRequirement::parse(e) {
                    // Only metadata.name with In/NotIn is a valid field selector.
                    Some(r)
                        if fields
                            && (r.key != "metadata.name" || !matches!(r.op, NodeOp::In(_) | NodeOp::NotIn(_))) =>
                    {
                        valid = false
                    }
                    Some(r) => out.push(r),
                    None => valid = false,
                }
            }
            out
        };
        let expressions = parse(term.match_expressions.as_ref(), false);
        let fields = parse(term.match_fields.as_ref(), true);
        NodeSelectorTerm { expressions, fields, valid }
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        if !self.valid || (self.expressions.is_empty() && self.fields.is_empty()) {
            return false;
        }
        self.expressions.iter().all(|r| r.matches(node.label(&r.key)))
            && self.fields.iter().all(|r| r.matches(Some(node.name())))
    }
}

/// The pod's `nodeSelector` plus required node affinity (upstream's
/// `nodeaffinity.RequiredNodeAffinity`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredNodeAffinity {
    node_selector: Vec<(String, String)>,
    /// None when the pod has no required node affinity; terms are ORed.
    terms: Option<Vec<NodeSelectorTerm>>,
}

impl RequiredNodeAffinity {
    pub fn from_pod(p: &api::Pod) -> Self {
        let spec = pod::spec(p);
        let node_selector = spec.node_selector.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
        let terms = required.map(|r| r.node_selector_terms.iter().map(NodeSelectorTerm::from_typed).collect());
        RequiredNodeAffinity { node_selector, terms }
    }

    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        if !self.node_selector.iter().all(|(k, v)| node.label(k) == Some(v.as_str())) {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(node)),
        }
    }
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
