//! Label selectors, node selector terms and pod affinity terms with upstream's matching rules.

use serde_json::{Map, Value};

use super::{label, labels_of, slice, str_of, NodeInfo, PodInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A `metav1.LabelSelector`. A missing (null) selector matches nothing and an empty one
/// matches everything, as `LabelSelectorAsSelector` makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    slice(v).iter().filter_map(Value::as_str).map(str::to_string).collect()
}

impl LabelSelector {
    pub fn everything() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: false }
    }

    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parses a selector; an invalid operator makes it match nothing (upstream rejects it).
    pub fn from_json(v: Option<&Value>) -> Self {
        let Some(v) = v.filter(|v| v.is_object()) else {
            return Self::nothing();
        };
        let mut requirements = Vec::new();
        if let Some(ml) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in ml {
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Op::In,
                    values: vec![val.as_str().unwrap_or_default().to_string()],
                });
            }
        }
        for e in slice(v.get("matchExpressions")) {
            let op = match str_of(e, "operator") {
                Some("In") => Op::In,
                Some("NotIn") => Op::NotIn,
                Some("Exists") => Op::Exists,
                Some("DoesNotExist") => Op::DoesNotExist,
                _ => return Self::nothing(),
            };
            requirements.push(Requirement {
                key: str_of(e, "key").unwrap_or_default().to_string(),
                op,
                values: strings(e.get("values")),
            });
        }
        LabelSelector { requirements, nothing: false }
    }

    /// Adds `key in (value)`, used for matchLabelKeys.
    pub fn require_equal(&mut self, key: &str, value: &str) {
        self.requirements.push(Requirement { key: key.to_string(), op: Op::In, values: vec![value.to_string()] });
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        if self.nothing {
            return false;
        }
        self.requirements.iter().all(|r| {
            let v = label(labels, &r.key);
            match r.op {
                Op::In => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::NotIn => v.is_none_or(|v| !r.values.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }
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
    fn parse(e: &Value) -> Option<Self> {
        let values = strings(e.get("values"));
        let int = || -> Option<i64> {
            match values.as_slice() {
                [one] => one.parse().ok(),
                _ => None,
            }
        };
        let op = match str_of(e, "operator")? {
            "In" => NodeOp::In(values.clone()),
            "NotIn" => NodeOp::NotIn(values.clone()),
            "Exists" => NodeOp::Exists,
            "DoesNotExist" => NodeOp::DoesNotExist,
            "Gt" => NodeOp::Gt(int()?),
            "Lt" => NodeOp::Lt(int()?),
            _ => return None,
        };
        Some(NodeRequirement { key: str_of(e, "key").unwrap_or_default().to_string(), op })
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
    pub fn from_json(v: &Value) -> Self {
        let mut valid = true;
        let mut parse = |key: &str, fields: bool| -> Vec<NodeRequirement> {
            let mut out = Vec::new();
            for e in slice(v.get(key)) {
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
        let expressions = parse("matchExpressions", false);
        let fields = parse("matchFields", true);
        NodeSelectorTerm { expressions, fields, valid }
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        if !self.valid || (self.expressions.is_empty() && self.fields.is_empty()) {
            return false;
        }
        let labels = node.labels();
        self.expressions.iter().all(|r| r.matches(label(labels, &r.key)))
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
    pub fn from_pod(pod: &Value) -> Self {
        let spec = pod.get("spec");
        let node_selector = spec
            .and_then(|s| s.get("nodeSelector"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let required = spec
            .and_then(|s| s.get("affinity"))
            .and_then(|a| a.get("nodeAffinity"))
            .and_then(|n| n.get("requiredDuringSchedulingIgnoredDuringExecution"))
            .filter(|r| !r.is_null());
        let terms =
            required.map(|r| slice(r.get("nodeSelectorTerms")).iter().map(NodeSelectorTerm::from_json).collect());
        RequiredNodeAffinity { node_selector, terms }
    }

    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        if !self.node_selector.iter().all(|(k, v)| label(labels, k) == Some(v.as_str())) {
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
    pub fn from_json(v: &Value, owner_namespace: &str) -> Self {
        let mut namespaces = strings(v.get("namespaces"));
        let ns_sel = v.get("namespaceSelector").filter(|s| !s.is_null());
        if namespaces.is_empty() && ns_sel.is_none() {
            namespaces.push(owner_namespace.to_string());
        }
        AffinityTerm {
            namespaces,
            namespace_selector: LabelSelector::from_json(ns_sel),
            selector: LabelSelector::from_json(v.get("labelSelector")),
            topology_key: str_of(v, "topologyKey").unwrap_or_default().to_string(),
        }
    }

    /// Whether `pod` is selected by this term; `ns_labels` are the labels of the pod's
    /// namespace (only consulted for a namespaceSelector).
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&Map<String, Value>>) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace) || self.namespace_selector.matches(ns_labels);
        ns_ok && self.selector.matches(pod.labels())
    }

    /// Like `matches` for a raw object's labels (used by tests and callers without PodInfo).
    pub fn matches_object(&self, namespace: &str, obj: &Value) -> bool {
        let ns_ok = self.namespaces.iter().any(|n| n == namespace) || self.namespace_selector.matches(None);
        ns_ok && self.selector.matches(labels_of(obj))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedAffinityTerm {
    pub weight: i64,
    pub term: AffinityTerm,
}

impl WeightedAffinityTerm {
    pub fn from_json(v: &Value, owner_namespace: &str) -> Self {
        WeightedAffinityTerm {
            weight: v.get("weight").and_then(Value::as_i64).unwrap_or(0),
            term: AffinityTerm::from_json(v.get("podAffinityTerm").unwrap_or(&Value::Null), owner_namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn null_selector_matches_nothing_empty_matches_everything() {
        let l = labels(json!({"app": "web"}));
        assert!(!LabelSelector::from_json(None).matches(Some(&l)));
        assert!(LabelSelector::from_json(Some(&json!({}))).matches(Some(&l)));
        assert!(LabelSelector::from_json(Some(&json!({}))).matches(None));
    }

    #[test]
    fn selector_operators() {
        let l = labels(json!({"app": "web", "tier": "fe"}));
        let sel = |v: Value| LabelSelector::from_json(Some(&v)).matches(Some(&l));
        assert!(sel(json!({"matchLabels": {"app": "web"}})));
        assert!(!sel(json!({"matchLabels": {"app": "db"}})));
        assert!(sel(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]})));
        assert!(sel(json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})));
        assert!(sel(json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]})));
        assert!(!sel(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})));
        assert!(!sel(json!({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]})));
    }
}
