//! Node selector terms and a pod's required node affinity, matched as upstream's
//! `nodeaffinity` package does: the scheduler filters nodes with them and the DaemonSet
//! controller decides where its pods belong with the same code.

use crate::pod;
use k8s_openapi::api::core::v1 as api;

/// What matching reads of a node (the scheduler's cached node, or a Node object).
pub trait NodeFacts {
    fn name(&self) -> &str;
    fn label(&self, key: &str) -> Option<&str>;
}

impl NodeFacts for api::Node {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
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

    pub fn matches(&self, node: &impl NodeFacts) -> bool {
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
        Self::from_spec(pod::spec(p))
    }

    pub fn from_spec(spec: &api::PodSpec) -> Self {
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

    pub fn matches(&self, node: &impl NodeFacts) -> bool {
        if !self.node_selector.iter().all(|(k, v)| node.label(k) == Some(v.as_str())) {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(node)),
        }
    }
}
